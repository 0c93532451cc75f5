"""Keys and private logs through the real gateway: ``llmpick keys create`` then
``llmpick serve`` (uvicorn, the bundled SmolLM2 in-process) on loopback, the official
openai SDK as the client.

- 401 in OpenAI's shape for a missing, unknown, expired or revoked key; 403 for a key
  limited to other models; ``/health`` open, ``/metrics`` and ``/ready`` need a key
  with ``--protect-metrics``; a non-loopback address without keys is refused.
- A canary prompt (streamed and not) reaches no log file, no captured output, no table
  of the store, no Redis value and no metric: only its HMAC is in the access log. With
  ``--log-text`` it is there (so the scan can see it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
import redis

from conftest import create_key, free_port, start_gateway, stop

pytestmark = [pytest.mark.slow, pytest.mark.network]

CANARY = "CANARY-5e1d0b7a-never-log-me"
SECRET = "test-log-secret-0123456789abcdef"  # LLMPICK_LOG_SECRET of the gateway


def _llmpick(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmpick", *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


def _create_key(cwd: Path, name: str, *flags: str) -> str:
    return create_key(cwd, name, "--db", "gw.db", *flags)


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, redis_url: str
) -> Iterator[dict[str, str]]:
    """A gateway with four keys, an access log, --protect-metrics and Redis (db 3)."""
    workdir = tmp_path_factory.mktemp("keyed")
    redis_db = redis_url.rsplit("/", 1)[0] + "/3"
    redis.Redis.from_url(redis_db).flushdb()
    # expires while the other keys are made and the gateway starts (the test waits for it)
    soon = (datetime.now(UTC) + timedelta(seconds=10)).isoformat(timespec="seconds")
    keys = {
        "expiring": _create_key(workdir, "expiring", "--expires", soon),
        "full": _create_key(workdir, "full"),
        "limited": _create_key(workdir, "limited", "--models", "local", "--rpm", "100"),
        "revoked": _create_key(workdir, "revoked"),
    }
    done = _llmpick(workdir, "keys", "revoke", "revoked", "--db", "gw.db")
    assert done.returncode == 0, done.stderr
    config = {
        "models": {
            "local": {"backend": "llamacpp", "model": str(smollm2_path)},
            "other": {"backend": "llamacpp", "model": str(smollm2_path)},
        },
        "serve": {"models": ["local", "other"], "default_max_tokens": 8},
    }
    proc, url = start_gateway(
        workdir, config, "--db", "gw.db", "--access-log", "logs/access.jsonl",
        "--protect-metrics", "--redis", redis_db,
        env={"LLMPICK_LOG_SECRET": SECRET}, capture=True,
    )  # fmt: skip
    try:
        yield {**keys, "url": url, "dir": str(workdir), "redis": redis_db}
    finally:
        assert stop(proc) == 0


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def _hello(client: openai.OpenAI, model: str = "local") -> object:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=2
    )


def _openai_error(body: object) -> dict[str, object]:
    assert isinstance(body, dict) and {"message", "type", "code", "param"} <= set(body)
    return body


def test_every_unusable_key_is_a_401_in_openais_shape(keyed: dict[str, str]) -> None:
    url = keyed["url"]
    missing = httpx.post(f"{url}/v1/chat/completions", json={"model": "local", "messages": []})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert _openai_error(missing.json()["error"])["code"] == "missing_api_key"
    assert httpx.get(f"{url}/v1/models").status_code == 401
    while datetime.now(UTC) < datetime.fromisoformat(_expiry(keyed)):
        time.sleep(0.2)
    cases = {"lp-000000000000-" + "A" * 43: "invalid_api_key", "sk-guess": "invalid_api_key",
             keyed["expiring"]: "expired_api_key", keyed["revoked"]: "revoked_api_key"}  # fmt: skip
    for key, code in cases.items():
        with _client(url, key) as client, pytest.raises(openai.AuthenticationError) as info:
            _hello(client)
        assert _openai_error(info.value.body)["code"] == code
        assert "Traceback" not in info.value.response.text
    with _client(url, keyed["full"]) as client:
        answer = _hello(client)
    assert answer.usage.total_tokens > 0  # type: ignore[attr-defined]


def _expiry(keyed: dict[str, str]) -> str:
    done = _llmpick(Path(keyed["dir"]), "keys", "list", "--db", "gw.db", "--format", "json")
    listed = {k["name"]: k for k in json.loads(done.stdout)}
    assert listed["revoked"]["state"] == "revoked"
    return str(listed["expiring"]["expires_at"])


def test_a_key_limited_to_a_model_gets_403_for_others(keyed: dict[str, str]) -> None:
    with _client(keyed["url"], keyed["limited"]) as client:
        assert _hello(client, "local")
        for other in ("other", "auto"):
            with pytest.raises(openai.PermissionDeniedError) as info:
                _hello(client, other)
            error = _openai_error(info.value.body)
            assert error["code"] == "model_not_allowed" and error["param"] == "model"
            assert "may use: local" in str(error["message"])
        with pytest.raises(openai.NotFoundError):  # unknown to the gateway: 404 first
            _hello(client, "nope")
    with _client(keyed["url"], keyed["full"]) as client:
        assert _hello(client, "auto")


def test_health_is_open_metrics_and_ready_need_a_key(keyed: dict[str, str]) -> None:
    url = keyed["url"]
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    auth = {"Authorization": f"Bearer {keyed['full']}"}
    for path in ("/metrics", "/ready"):
        assert httpx.get(url + path).status_code == 401
        bad = httpx.get(url + path, headers={"Authorization": f"Bearer {keyed['revoked']}"})
        assert bad.status_code == 401
        assert httpx.get(url + path, headers=auth).status_code == 200


def test_non_loopback_address_without_keys_needs_the_flag(tmp_path: Path) -> None:
    refused = _llmpick(tmp_path, "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert refused.returncode != 0
    assert "refusing to serve on 0.0.0.0 without API keys" in refused.stderr
    assert "--allow-unauthenticated" in refused.stderr and "Traceback" not in refused.stderr
    # with the flag it warns; a model that cannot open stops it before it binds anything
    allowed = _llmpick(tmp_path, "serve", "--host", "0.0.0.0", "--port", str(free_port()),
                       "--allow-unauthenticated", "-m", "llamacpp:missing.gguf")  # fmt: skip
    assert "warning: serving on 0.0.0.0 without API keys" in allowed.stderr
    assert allowed.returncode != 0


def _hmac(text: str) -> str:
    return hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()


def _send_canary(url: str, key: str) -> list[str]:
    """The canary non-streamed, streamed (chat) and as a plain prompt; the prompts sent."""
    prompts = [f"Repeat exactly: {CANARY}", f"Say {CANARY} twice.", f"{CANARY} is"]
    with _client(url, key) as client:
        answer = client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": prompts[0]}], max_tokens=8
        )
        assert answer.choices[0].message.content is not None
        stream = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": prompts[1]}], max_tokens=8,
            stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        assert [chunk for chunk in stream]
        plain = client.completions.create(model="local", prompt=prompts[2], max_tokens=4)
        assert plain.usage is not None
    return prompts


def _store_dump(db: Path) -> str:
    """Every row of every table of the SQLite store, as text."""
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = [repr(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables]
    assert "serve_requests" in tables and "key_usage" in tables
    return "\n".join(rows)


def test_canary_reaches_no_log_table_redis_value_or_metric(keyed: dict[str, str]) -> None:
    url, workdir = keyed["url"], Path(keyed["dir"])
    prompts = _send_canary(url, keyed["full"])
    metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {keyed['full']}"})
    assert metrics.status_code == 200 and "llmpick_requests_total" in metrics.text
    assert CANARY not in metrics.text
    lines = [json.loads(x) for x in (workdir / "logs" / "access.jsonl").read_text().splitlines()]
    db = workdir / "gw.db"
    deadline = time.monotonic() + 10  # the request log is written in batches
    while _logged(db) < len(lines) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _logged(db) == len(lines)
    assert CANARY not in _store_dump(db)
    digests = {line["prompt_hmac"] for line in lines}
    assert {_hmac(p) for p in prompts} <= digests  # the HMAC under the secret, nothing more
    assert not any("prompt" in line or "output" in line for line in lines)
    for path in workdir.rglob("*"):  # access log, captured stdout/stderr, db, WAL
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
            assert keyed["full"].encode() not in path.read_bytes(), path
    with redis.Redis.from_url(keyed["redis"]) as client:
        names = client.keys("*")
        assert names  # the limits and usage counters are there
        for name in names:
            assert CANARY not in repr(_redis_value(client, name))
            assert CANARY.encode() not in name


def _redis_value(client: redis.Redis, name: bytes) -> object:
    kind = client.type(name).decode()
    if kind == "hash":
        return client.hgetall(name)
    if kind == "list":
        return client.lrange(name, 0, -1)
    if kind == "zset":
        return client.zrange(name, 0, -1, withscores=True)
    if kind == "set":
        return client.smembers(name)
    return client.get(name)


def _logged(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM serve_requests").fetchone()[0])


def test_with_log_text_the_canary_is_in_the_log(tmp_path: Path, smollm2_path: Path) -> None:
    """The opt-in writes the text: proof that the scans above could have seen it."""
    config = {"models": {"local": {"backend": "llamacpp", "model": str(smollm2_path)}},
              "serve": {"models": ["local"]}}  # fmt: skip
    proc, url = start_gateway(
        tmp_path, config, "--db", "gw.db", "--access-log", "access.jsonl", "--log-text"
    )
    try:
        with _client(url, "unused") as client:
            client.chat.completions.create(
                model="local", messages=[{"role": "user", "content": CANARY}], max_tokens=2
            )
    finally:
        assert stop(proc) == 0
    line = json.loads((tmp_path / "access.jsonl").read_text().splitlines()[0])
    assert line["prompt"] == CANARY and line["output"] is not None
