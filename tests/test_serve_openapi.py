"""The gateway's ``/openapi.json`` is what it really does: schemathesis fuzzes a running
``llmpick serve`` (uvicorn, the bundled SmolLM2 in-process, ``--max-output-tokens 4``)
with bodies made from the schema, valid and invalid, and checks every answer: no 5xx,
documented status, content type, headers and body schema; invalid bodies refused.

Bounded: a few dozen examples per operation, no deadline, no example database.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import DataGenerationMethod, GenerationConfig
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.models import Status
from schemathesis.runner import events

from conftest import start_gateway, stop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    # schemathesis 3.x subclasses it on first use (fixed upstream in 4.x)
    pytest.mark.filterwarnings("ignore:jsonschema.RefResolver is deprecated:DeprecationWarning"),
]

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
)
VISIBLE = re.compile(r"[\t\x20-\x7e]*")
PATHS = "^/(v1/chat/completions|v1/completions|v1/models|health)$"


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("openapi")
    # short inputs and outputs keep each generated request cheap (longer ones are 400s)
    config = {"models": {"local": {"backend": "llamacpp", "model": str(smollm2_path)}},
              "serve": {"models": ["local"],
                        "security": {"rules": {"max_input_tokens": 48}}}}  # fmt: skip
    proc, url = start_gateway(workdir, config, "--db", "gw.db", "--max-output-tokens", "4")
    yield url
    assert stop(proc) == 0


@pytest.fixture()
def openapi_31() -> Iterator[None]:
    """FastAPI writes OpenAPI 3.1, which schemathesis 3.x reads behind a flag."""
    schemathesis.experimental.OPEN_API_3_1.enable()
    yield
    schemathesis.experimental.OPEN_API_3_1.disable()


@pytest.mark.usefixtures("openapi_31")
def test_the_gateway_does_what_its_openapi_schema_says(gateway_url: str) -> None:
    schema = schemathesis.from_uri(
        f"{gateway_url}/openapi.json",
        data_generation_methods=[DataGenerationMethod.positive, DataGenerationMethod.negative],
    ).include(path_regex=PATHS)

    @schema.hook
    def map_body(context: object, body: object) -> object:
        # most valid bodies name the served model, so they reach generation
        if isinstance(body, dict) and isinstance(body.get("model"), str) and len(body) % 3:
            body["model"] = "local"
        return body

    @schema.hook
    def map_headers(context: object, headers: dict[str, str] | None) -> dict[str, str] | None:
        # a header value with control bytes is not HTTP: the server's parser (uvicorn's
        # httptools or h11) answers it in text/plain before any route is reached
        if not headers:
            return headers
        return {k: v for k, v in headers.items() if VISIBLE.fullmatch(k + v)}

    runner = schemathesis.runner.from_schema(
        schema,
        checks=CHECKS,
        hypothesis_settings=settings(
            max_examples=20,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
        generation_config=GenerationConfig(),
        request_timeout=60_000,
    )
    failures, tested = [], []
    statuses: Counter[tuple[str, int]] = Counter()  # (path, status) per request sent
    for event in runner.execute():
        if isinstance(event, events.AfterExecution):
            tested.append(f"{event.method} {event.path}")
            for check in event.result.checks:
                if check.name == "not_a_server_error" and check.response is not None:
                    statuses[(event.path, check.response.status_code)] += 1
                if check.value != Status.success:
                    failures.append(f"{event.method} {event.path} {check.name}: {check.message}"
                                    f" ({check.example.body!r:.300})")  # fmt: skip
            failures += [f"{event.method} {event.path}: {e.exception}" for e in event.result.errors]
        if isinstance(event, events.Finished):
            assert not event.generic_errors, event.generic_errors
    assert sorted(tested) == sorted(
        ["POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models", "GET /health"]
    )
    assert not failures, "\n".join(sorted(set(failures)))
    print(sorted(statuses.items()))
    for path in ("/v1/chat/completions", "/v1/completions"):  # answered, and refused
        assert statuses[(path, 200)] and statuses[(path, 400)], statuses


def test_the_schema_states_the_configured_rules(gateway_url: str) -> None:
    doc = httpx.get(f"{gateway_url}/openapi.json").json()
    chat = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert {"type": "integer", "minimum": 1, "maximum": 4} in chat["max_tokens"]["anyOf"]
    assert chat["messages"]["maxItems"] == 256
    assert "422" not in json.dumps(doc["paths"])
    streamed = doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(streamed) == {"application/json", "text/event-stream"}
    # no max_tokens: the default within the cap, not a 400
    body = {"model": "local", "messages": [{"role": "user", "content": "Tell a long story."}]}
    answer = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert 0 < answer.json()["usage"]["completion_tokens"] <= 4
    # ignore_eos (what `llmpick bench` sends) is accepted and asks for exactly max_tokens
    body = {"model": "local", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
            "ignore_eos": True}  # fmt: skip
    answer = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 4
