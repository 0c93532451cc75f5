"""llmpick serve for real: uvicorn on loopback, the official openai SDK as the client.

One gateway process per module serves the bundled SmolLM2 in-process ("local") and
a llama.cpp server on loopback through the openai backend ("remote"); the fault
test kills a second upstream mid-stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from conftest import start_gateway, start_llama_server, stop

pytestmark = [pytest.mark.slow, pytest.mark.network]


def _start_gateway(workdir: Path, config: dict[str, object]) -> tuple[subprocess.Popen[bytes], str]:
    return start_gateway(workdir, config, "--db", "gw.db", capture=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop(proc)


@pytest.fixture(scope="module")
def upstream(smollm2_path: Path) -> Iterator[str]:
    proc, url = start_llama_server(smollm2_path)
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, upstream: str
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("gateway")
    config = {
        "models": {
            "local": {"backend": "llamacpp", "model": str(smollm2_path)},
            "remote": {"backend": "openai", "model": "smollm2", "base_url": upstream},
        },
        "serve": {"models": ["local", "remote"], "pool": {"max_queue": 0}},
    }
    proc, url = _start_gateway(workdir, config)
    yield url
    _stop(proc)


@pytest.fixture()
def gateway_log(gateway: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """What the module's gateway printed to stderr so far."""
    port = gateway.rsplit(":", 1)[1]
    found = list(tmp_path_factory.getbasetemp().glob(f"gateway*/gateway-{port}.err"))
    assert found, "the gateway's stderr file"
    return found[0].read_text(encoding="utf-8")


@pytest.fixture()
def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)


def test_openai_sdk_non_streaming_with_route_header(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="local", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8,
        temperature=0,
    )  # fmt: skip
    answer = raw.parse()
    assert answer.model == "local"
    assert answer.choices[0].message.content
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert "route=local" in raw.headers["x-llmpick-route"]
    assert raw.headers["x-llmpick-model"] == "local"


def test_openai_sdk_streaming_usage_matches_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Count to five."}], max_tokens=12,
        temperature=0, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert usage is not None
    # the in-process llama.cpp backend streams one token per chunk: usage is exact
    assert usage.completion_tokens == sum(1 for p in pieces if p)
    assert finish in {"stop", "length"}
    greedy = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Count to five."}], max_tokens=12,
        temperature=0,
    )  # fmt: skip
    assert "".join(pieces) == greedy.choices[0].message.content


def test_local_model_batches_by_default(gateway: str, gateway_log: str) -> None:
    """No options: the bundled GGUF is served with automatic slots, and says so at start."""
    line = next(x for x in gateway_log.splitlines() if x.startswith("local: "))
    slots = int(line.split("local: ", 1)[1].split(" ", 1)[0])
    assert slots >= 2 and "slot(s) (automatic)" in line and "KV cache ~" in line, line
    ready = httpx.get(gateway + "/ready").json()
    local = next(m for m in ready["models"] if m["name"] == "local")
    assert local["concurrency"] == slots, ready


def test_completions_and_models(client: openai.OpenAI) -> None:
    done = client.completions.create(model="remote", prompt="The sky is", max_tokens=6)
    assert done.model == "remote" and done.usage is not None
    assert done.usage.completion_tokens > 0
    listed = {m.id: m for m in client.models.list().data}
    assert {"local", "remote", "auto"} <= set(listed)
    assert listed["auto"].model_extra["resolves_to"] == ["local", "remote"]


def _error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "code", "param"} <= set(body["error"])
    assert "Traceback" not in response.text
    return dict(body["error"])


def test_errors_are_openai_shaped(gateway: str) -> None:
    url = gateway + "/v1/chat/completions"
    hello = [{"role": "user", "content": "hi"}]
    unknown = httpx.post(url, json={"model": "nope", "messages": hello})
    assert unknown.status_code == 404 and _error(unknown)["code"] == "model_not_found"
    two = httpx.post(url, json={"model": "local", "messages": hello, "n": 2})
    assert two.status_code == 400 and _error(two)["param"] == "n"
    extra = httpx.post(url, json={"model": "local", "messages": hello, "bogus": 1})
    assert extra.status_code == 400 and "bogus" in str(_error(extra)["message"])
    long_prompt = [{"role": "user", "content": "word " * 6000}]
    too_long = httpx.post(url, json={"model": "local", "messages": long_prompt}, timeout=60)
    assert too_long.status_code == 400
    assert _error(too_long)["code"] == "context_length_exceeded"
    huge = httpx.post(url, content=b'{"model": "local", "x": "' + b"a" * 2_000_000 + b'"}')
    assert huge.status_code == 413
    _error(huge)
    # a lone UTF-16 surrogate cannot be tokenized or logged: refused while parsing (was a 500)
    lone = b'{"model": "local", "messages": [{"role": "user", "content": "\\ud83b x"}]}'
    surrogate = httpx.post(url, content=lone, headers={"content-type": "application/json"})
    assert surrogate.status_code == 400 and "surrogate" in str(_error(surrogate)["message"])
    cut = httpx.post(
        url, content=b'{"model": "local",', headers={"content-type": "application/json"}
    )
    assert cut.status_code == 400 and "not valid JSON" in str(_error(cut)["message"])


def test_queue_full_is_503(gateway: str) -> None:
    """The local model takes as many requests as it has slots and queues none (max_queue 0)."""
    ready = httpx.get(gateway + "/ready").json()
    slots = next(m["concurrency"] for m in ready["models"] if m["name"] == "local")
    body = {"model": "local", "messages": [{"role": "user", "content": "Tell a story."}],
            "max_tokens": 48}  # fmt: skip
    statuses: list[int] = []
    errors: list[dict[str, object]] = []

    def call() -> None:
        response = httpx.post(gateway + "/v1/chat/completions", json=body, timeout=60)
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.headers["retry-after"]
            errors.append(_error(response))

    threads = [threading.Thread(target=call) for _ in range(slots + 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 200 in statuses and 503 in statuses
    assert errors[0]["code"] == "queue_full"


def test_health_ready_metrics_and_stats(gateway: str, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="remote", messages=[{"role": "user", "content": "hi"}],
                                   max_tokens=4)  # fmt: skip
    assert httpx.get(gateway + "/health").json() == {"status": "ok"}
    ready = httpx.get(gateway + "/ready").json()
    assert ready["status"] == "ready" and ready["failing"] == []
    metrics = httpx.get(gateway + "/metrics").text
    assert 'llmpick_requests_total{model="remote",route="remote",status="200"}' in metrics
    assert "llmpick_time_to_first_token_seconds_bucket" in metrics
    assert "llmpick_queue_depth" in metrics
    spec = httpx.get(gateway + "/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"]


def test_eval_and_bench_through_the_gateway(gateway: str, tmp_path: Path) -> None:
    """llmpick measuring its own gateway with its openai backend."""
    data = tmp_path / "d.csv"
    data.write_text("prompt,expected\nSay yes.,yes\nSay no.,no\n", encoding="utf-8")
    spec = f"openai:auto@{gateway}/v1"
    env = {**os.environ, "OPENAI_API_KEY": "unused"}
    run = subprocess.run(
        [sys.executable, "-m", "llmpick", "eval", str(data), "-m", spec, "--max-tokens", "6",
         "--scorer", "contains", "--format", "json", "--no-progress", "--concurrency", "1",
         "--db", str(tmp_path / "e.db")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["cells_total"] == 2
    assert all(m["errors"] == 0 for m in result["models"].values())
    bench = subprocess.run(
        [sys.executable, "-m", "llmpick", "bench", "-m", f"openai:remote@{gateway}/v1",
         "--concurrency", "1,2", "--requests", "4", "--max-tokens", "8", "--warmup", "0",
         "--format", "json", "--quiet", "--db", str(tmp_path / "b.db")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    points = json.loads(bench.stdout)["results"]
    # bench asks for ignore_eos: the gateway must accept it (every request failed before)
    assert [p["errors"] for p in points] == [0, 0], points
    assert all(p["time_to_first_token_s"]["p50"] for p in points)


def test_upstream_killed_mid_stream(tmp_path: Path, smollm2_path: Path) -> None:
    """The client gets an error event, the gateway stays up and names the model failing."""
    up, up_url = start_llama_server(smollm2_path)
    config = {
        "models": {"doomed": {"backend": "openai", "model": "m", "base_url": up_url,
                              "options": {"max_retries": 0}}},
        "serve": {"models": ["doomed"]},
    }  # fmt: skip
    gw, url = _start_gateway(tmp_path, config)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="doomed", stream=True, max_tokens=400,
            messages=[{"role": "user", "content": "Write a very long story about the sea."}],
        )  # fmt: skip
        with pytest.raises(openai.APIError):
            for i, _chunk in enumerate(stream):
                if i == 2:
                    up.kill()
                    up.wait(10)
        assert httpx.get(url + "/health").status_code == 200
        # an anonymous /ready reads the last known state (no probe per caller): one broken
        # stream is below failure_threshold, the background re-probe finds the server gone
        deadline = time.monotonic() + 30
        while (ready := httpx.get(url + "/ready")).status_code != 503:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.5)
        assert ready.json()["failing"] == ["doomed"]
        after = httpx.post(
            url + "/v1/chat/completions",
            timeout=30,
            json={"model": "doomed", "messages": [{"role": "user", "content": "x"}]},
        )
        assert after.status_code in (502, 503)
        _error(after)
    finally:
        _stop(gw)
        if up.poll() is None:
            up.kill()
