"""The security layer over HTTP: a stand-in gateway app (real uvicorn processes) wired
through ``llmpick.serve.security.install`` and the policy seam, called with the official
openai SDK: 401/403/413/400/429 in OpenAI's shape, exact limits across two processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from conftest import free_port, wait_for_port
from llmpick.serve.keys import KeyStore
from llmpick.serve.limits import Limiter
from llmpick.store import open_store

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[1]

# the smallest gateway that uses the seam the way `llmpick serve` does; answers "ok ok ok"
_APP = """
import sys, time, uuid
from pathlib import Path
import uvicorn
from fastapi import FastAPI, Request
from llmpick.serve.accesslog import AccessLog
from llmpick.serve.rules import RequestRules
from llmpick.serve.security import SecurityOptions, SecurityPolicy, install
from llmpick.store import open_store

db, redis_url, port, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
options = SecurityOptions(redis_url=redis_url, protect_metrics=True,
                          rules=RequestRules(max_body_bytes=4000, max_output_tokens=64))
policy = SecurityPolicy(open_store(db), options, access_log=AccessLog(log, b"k" * 32))
app = FastAPI()
install(app, policy)

@app.get("/health")
async def health():
    return {"status": "ok"}

@app.get("/metrics")
async def metrics():
    return {"requests": 0}

@app.post("/v1/chat/completions")
async def chat(request: Request):
    body = await request.json()
    principal = await policy.authenticate(request)
    policy.rules.check_messages(body["messages"])
    policy.rules.check_stop(body.get("stop"))
    prompt = " ".join(m["content"] for m in body["messages"])
    prompt_tokens = len(prompt.split())
    await policy.admit(principal, body["model"], prompt_tokens, body.get("max_tokens"))
    await policy.on_output_tokens(principal, body["model"], 3)
    record = {"request_id": uuid.uuid4().hex, "endpoint": "/v1/chat/completions",
              "key_name": principal.key_name, "model": body["model"], "status": 200,
              "prompt_tokens": prompt_tokens, "completion_tokens": 3}
    await policy.on_finish(record, prompt, "ok ok ok")
    return {"id": "x", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "ok ok ok"}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 3,
                      "total_tokens": prompt_tokens + 3}}

uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")
"""


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, str]]:
    """Two stand-in gateway processes sharing one key store and one redis-server."""
    tmp = tmp_path_factory.mktemp("gw")
    db = tmp / "keys.db"
    with open_store(db) as store:
        keys = KeyStore(store)
        _, limited = keys.create("limited", rpm=20, tpm=100_000, models=["auto"])
        _, free = keys.create("free")
        _, revoked = keys.create("gone")
        keys.revoke("gone")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs, urls = [], []
    for i in range(2):
        port = free_port()
        args = [str(db), redis_url, str(port), str(tmp / f"access{i}.jsonl")]
        procs.append(subprocess.Popen([sys.executable, "-c", _APP, *args], env=env))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for proc, url in zip(procs, urls, strict=True):
            wait_for_port(proc, int(url.rsplit(":", 1)[1]), "stand-in gateway", timeout=60)
        yield {"a": urls[0], "b": urls[1], "limited": limited, "free": free,
               "revoked": revoked, "db": str(db), "redis": redis_url}  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def _client(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)


def _chat(client: openai.OpenAI, content: str = "hello there", **kw: object) -> object:
    return client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": content}],
        max_tokens=8,
        **kw,  # type: ignore[arg-type]
    )


def test_keys_are_required_and_errors_have_openais_shape(gateways: dict[str, str]) -> None:
    base = gateways["a"]
    for key in ("wrong-key", gateways["revoked"]):
        with _client(base, key) as client, pytest.raises(openai.AuthenticationError) as info:
            _chat(client)
        assert info.value.status_code == 401
        body = info.value.body
        assert isinstance(body, dict) and {"message", "type", "code", "param"} <= set(body)
    missing = httpx.post(f"{base}/v1/chat/completions", json={})
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]["message"]
    assert httpx.get(f"{base}/health").status_code == 200
    assert httpx.get(f"{base}/metrics").status_code == 401
    auth = {"Authorization": f"Bearer {gateways['free']}"}
    assert httpx.get(f"{base}/metrics", headers=auth).status_code == 200
    with _client(base, gateways["free"]) as free:
        assert _chat(free).usage.total_tokens == 5  # type: ignore[attr-defined]
    with (
        _client(base, gateways["limited"]) as limited,
        pytest.raises(openai.PermissionDeniedError) as forbidden,
    ):
        limited.chat.completions.create(
            model="other", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    assert "may use: auto" in str(forbidden.value)


def test_size_and_content_rules(gateways: dict[str, str]) -> None:
    with _client(gateways["a"], gateways["free"]) as free:
        _check_rules(free)


def _check_rules(free: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as too_big:
        _chat(free, content="x " * 3000)
    assert too_big.value.status_code == 413
    with pytest.raises(openai.BadRequestError) as control:
        _chat(free, content="bell\x07")
    assert "U+0007" in str(control.value)
    with pytest.raises(openai.BadRequestError) as cap:
        free.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=65
        )
    assert "64 or fewer" in str(cap.value)
    with pytest.raises(openai.BadRequestError):
        _chat(free, stop=["a", "b", "c", "d", "e"])
    # prompts are data: markup and quotes reach the model unchanged
    assert _chat(free, content="<script>alert('x')</script> ; DROP TABLE t;--")


async def test_burst_of_50_across_two_processes_lets_exactly_20_through(
    gateways: dict[str, str],
) -> None:
    clients = [
        openai.AsyncOpenAI(base_url=f"{gateways[g]}/v1", api_key=gateways["limited"], max_retries=0)
        for g in ("a", "b")
    ]

    async def one(i: int) -> int:
        try:
            await clients[i % 2].chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
            return 200
        except openai.RateLimitError as exc:
            assert int(exc.response.headers["retry-after"]) >= 1
            assert exc.body["code"] == "rpm_limit_exceeded"  # type: ignore[index]
            return 429

    statuses = await asyncio.gather(*(one(i) for i in range(50)))
    for client in clients:
        await client.close()
    assert statuses.count(200) == 20 and statuses.count(429) == 30
    with open_store(gateways["db"]) as store:
        keys = KeyStore(store)
        key = keys.find("limited")
        assert key is not None
        usage = keys.usage(key.id)
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (20, 20, 60)
    limiter = Limiter(gateways["redis"])
    try:
        in_redis = await limiter.usage(key.id)
    finally:
        await limiter.close()
    # the usage counted in Redis by both processes agrees with the store
    assert (in_redis.requests, in_redis.prompt_tokens, in_redis.completion_tokens) == (20, 20, 60)
