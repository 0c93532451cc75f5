"""Gateway security parts: request rules (400/413/504), the policy's keys and limits,
the HMAC-only access log (a canary prompt reaches no log, store table or Redis value)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conftest import free_port
from llmpick.errors import ConfigError, RequestRejectedError
from llmpick.serve.accesslog import AccessLog, load_or_create_secret
from llmpick.serve.keys import REDIS_KEYS, KeyStore
from llmpick.serve.rules import BodySizeLimit, RequestRules, total_time_limit
from llmpick.serve.security import SecurityOptions, SecurityPolicy, check_bind
from llmpick.store import Store, open_store

CANARY = "CANARY-7f3a91c0-do-not-log"


def _rejected(fn: Any, *args: Any) -> RequestRejectedError:
    with pytest.raises(RequestRejectedError) as info:
        fn(*args)
    return info.value


def test_control_characters_are_refused_and_whitespace_is_kept() -> None:
    rules = RequestRules()
    ok = "tabs\tnew\nlines\r\n, <script>alert(1)</script>, emoji 🙂, DROP TABLE"
    rules.check_messages([{"role": "user", "content": ok}])
    for bad in ("nul\x00", "esc\x1b[31m", "del\x7f", "c1\x9b"):
        err = _rejected(rules.check_messages, [{"role": "user", "content": bad}])
        assert err.status == 400 and err.code == "invalid_characters"
        assert "messages[0].content" in err.message and "U+" in err.message
    parts = [{"role": "user", "content": [{"type": "text", "text": "a\x00"}]}]
    assert "messages[0].content[0].text" in _rejected(rules.check_messages, parts).message
    assert _rejected(rules.check_prompt, "x\x01").param == "prompt"


def test_message_count_stop_and_token_caps_say_what_is_allowed() -> None:
    rules = RequestRules(max_messages=2, max_stop=1, max_input_tokens=50, max_output_tokens=16)
    many = [{"role": "user", "content": "hi"}] * 3
    assert "at most 2" in _rejected(rules.check_messages, many).message
    assert _rejected(rules.check_stop, ["a", "b"]).param == "stop"
    assert "at most 64" in _rejected(rules.check_stop, "x" * 65).message
    err = _rejected(rules.check_tokens, 51, 8)
    assert err.code == "input_too_long" and "at most 50" in err.message
    err = _rejected(rules.check_tokens, 10, 17)
    assert err.param == "max_tokens" and "16 or fewer" in err.message
    rules.check_tokens(50, 16)
    assert rules.output_tokens(None) == 16 and rules.output_tokens(4) == 4


async def test_total_time_limit_is_a_504() -> None:
    with pytest.raises(RequestRejectedError) as info:
        async with total_time_limit(0.05):
            await asyncio.sleep(1)
    assert info.value.status == 504 and "0.05 s" in info.value.message


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    """A real uvicorn server on loopback behind BodySizeLimit(1000)."""

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())})

    app = BodySizeLimit(Starlette(routes=[Route("/echo", echo, methods=["POST"])]), 1000)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),))
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}/echo"
    server.should_exit = True
    thread.join(10)
    loop.close()


def test_body_over_the_limit_is_a_413_with_or_without_content_length(echo_server: str) -> None:
    with httpx.Client() as client:
        assert client.post(echo_server, content=b"x" * 1000).json() == {"bytes": 1000}
        too_big = client.post(echo_server, content=b"x" * 1001)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "body_too_large"
        chunked = client.post(echo_server, content=iter([b"x" * 600, b"x" * 600]))
        assert chunked.status_code == 413 and "1000 bytes" in chunked.json()["error"]["message"]


def test_non_loopback_bind_without_keys_needs_a_flag() -> None:
    assert check_bind("127.0.0.1", keys_configured=False, allow_open=False) is None
    assert check_bind("0.0.0.0", keys_configured=True, allow_open=False) is None
    with pytest.raises(ConfigError):
        check_bind("0.0.0.0", keys_configured=False, allow_open=False)
    assert "warning" in (check_bind("::", keys_configured=False, allow_open=True) or "")


def _request(path: str, token: str | None) -> HTTPConnection:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return HTTPConnection({"type": "http", "path": path, "headers": headers})


@pytest.fixture
async def policy(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[SecurityPolicy, Store]]:
    store = open_store(tmp_path / "s.db")
    options = SecurityOptions(redis_url=redis_url, access_log=tmp_path / "logs" / "access.jsonl")
    log = AccessLog(options.access_log, load_or_create_secret(tmp_path / "secret"))  # type: ignore[arg-type]
    policy = SecurityPolicy(store, options, access_log=log)
    yield policy, store
    await policy.close()
    store.close()


async def test_policy_keys_models_and_limits(policy: tuple[SecurityPolicy, Store]) -> None:
    sec, _ = policy
    assert (await sec.authenticate(_request("/v1/models", None))).key_id is None  # no keys yet
    _, secret = sec.keys.create(f"k-{uuid.uuid4().hex[:6]}", rpm=2, models=["auto"])
    assert sec.protects("/v1/chat/completions") and not sec.protects("/health")
    assert not sec.protects("/metrics")
    for token in (None, "wrong"):
        with pytest.raises(RequestRejectedError) as info:
            await sec.authenticate(_request("/v1/models", token))
        assert info.value.status == 401
    who = await sec.authenticate(_request("/v1/models", secret))
    with pytest.raises(RequestRejectedError) as forbidden:
        await sec.admit(who, "other-model", 5, 8)
    assert forbidden.value.status == 403 and "auto" in forbidden.value.message
    await sec.admit(who, "auto", 5, 8)
    await sec.admit(who, "auto", 5, 8)
    with pytest.raises(RequestRejectedError) as limited:
        await sec.admit(who, "auto", 5, 8)
    assert limited.value.status == 429 and limited.value.retry_after


async def test_canary_prompt_reaches_no_log_store_table_or_redis_value(
    policy: tuple[SecurityPolicy, Store], tmp_path: Path, redis_url: str
) -> None:
    sec, store = policy
    name = f"canary-{uuid.uuid4().hex[:6]}"
    _, secret = sec.keys.create(name, tpm=10_000)
    who = await sec.authenticate(_request("/v1/chat/completions", secret))
    prompt, output = f"my secret is {CANARY}", f"echo {CANARY}"
    await sec.admit(who, "auto", 7, 16)
    for _ in range(3):
        await sec.on_output_tokens(who, "auto", 1)
    record = {
        "request_id": "r1", "endpoint": "/v1/chat/completions", "key_name": name,
        "route": "auto", "model": "smollm2", "status": 200, "prompt_tokens": 7,
        "completion_tokens": 3, "total_s": 0.1, "stream": True,
    }  # fmt: skip
    await sec.on_finish(record, prompt, output)
    await sec.on_finish(record, prompt, output)  # same prompt: same digest
    lines = [json.loads(x) for x in (tmp_path / "logs" / "access.jsonl").read_text().splitlines()]
    assert lines[0]["prompt_hmac"] == lines[1]["prompt_hmac"] != lines[0]["output_hmac"]
    assert lines[0]["prompt_hmac"] != hashlib.sha256(prompt.encode()).hexdigest()
    expected = hmac.new((tmp_path / "secret").read_bytes().strip(), prompt.encode(), "sha256")
    assert lines[0]["prompt_hmac"] == expected.hexdigest()
    assert "prompt" not in lines[0] and lines[0]["key_name"] == name
    assert secret not in json.dumps(lines)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in "\n".join(store.db.iterdump())
    client = aioredis.Redis.from_url(redis_url)
    try:
        for key in await client.keys("*"):
            assert CANARY.encode() not in key
            kind = (await client.type(key)).decode()
            value = {"string": client.get, "hash": client.hgetall, "list": client.lrange}
            dumped = await (value[kind](key) if kind != "list" else client.lrange(key, 0, -1))
            assert CANARY not in repr(dumped)
    finally:
        await client.aclose()
    # store and Redis count the same usage
    key = sec.keys.find(name)
    assert key is not None
    in_store = sec.keys.usage(key.id)
    in_redis = await sec.limiter.usage(key.id)
    assert (in_store.prompt_tokens, in_store.completion_tokens) == (14, 6)
    assert (in_redis.requests, in_redis.prompt_tokens, in_redis.completion_tokens) == (1, 7, 3)


def test_raw_text_only_with_the_opt_in(tmp_path: Path) -> None:
    log = AccessLog(tmp_path / "a.jsonl", b"s" * 32, log_text=True)
    log.write({"request_id": "r", "endpoint": "/v1/completions", "status": 200}, "hi", "yo")
    log.close()
    line = json.loads((tmp_path / "a.jsonl").read_text())
    assert (line["prompt"], line["output"], line["schema_version"]) == ("hi", "yo", 1)


async def test_replicas_read_keys_shared_through_redis(tmp_path: Path, redis_url: str) -> None:
    """A key created (and later revoked) on one machine holds on a replica with another store."""
    with open_store(tmp_path / "admin.db") as admin:
        keys = KeyStore(admin)
        key, secret = keys.create(f"shared-{uuid.uuid4().hex[:6]}", rpm=5)
        assert keys.sync_to_redis(redis_url) >= 1
        replica_store = open_store(tmp_path / "replica.db")
        sec = SecurityPolicy(replica_store, SecurityOptions(redis_url=redis_url))
        try:
            who = await sec.authenticate(_request("/v1/models", secret))
            assert (who.key_id, who.rpm) == (key.id, 5)
            keys.revoke(key.name)
            keys.sync_to_redis(redis_url)
            with pytest.raises(RequestRejectedError) as info:
                await sec.authenticate(_request("/v1/models", secret))
            assert info.value.code == "revoked_api_key"
        finally:
            assert sec.limiter.redis is not None
            await sec.limiter.redis.hdel(REDIS_KEYS, key.id)  # type: ignore[misc]
            await sec.close()
            replica_store.close()
