"""The deployment of docs/deploy.md in miniature, on loopback: three llama.cpp servers
(SmolLM2) as the replicas of one model (``base_urls``), two ``llmpick serve`` processes
with their own stores sharing one Redis, keys created once with ``llmpick keys create
--redis``; the official openai SDK as the client.

- One key's RPM budget holds across both gateways (exactly N of a burst get through).
- An upstream killed during a load run: requests fail over to the other replicas; none
  fails that had not started streaming, none hangs; usage in the stores and in Redis
  agree.
- SIGTERM to one gateway: it drains (``/ready`` 503, new requests 503), the stream in
  flight finishes, it exits 0, and the other gateway keeps answering.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import redis

from conftest import create_key, start_gateway, start_llama_server, stop
from llmpick.serve.keys import KeyStore
from llmpick.serve.limits import Limiter
from llmpick.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.network]

BUDGET_RPM = 12


def _keys_create(cwd: Path, redis_url: str, name: str, *flags: str) -> str:
    return create_key(cwd, name, "--db", "admin.db", "--redis", redis_url, *flags)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, redis_url: str
) -> Iterator[dict[str, object]]:
    """Three upstreams, two gateways, one Redis (db 4), two keys."""
    tmp = tmp_path_factory.mktemp("deploy")
    shared = redis_url.rsplit("/", 1)[0] + "/4"
    redis.Redis.from_url(shared).flushdb()
    keys = {
        "budget": _keys_create(tmp, shared, "budget", "--rpm", str(BUDGET_RPM)),
        "load": _keys_create(tmp, shared, "load", "--rpm", "1000", "--tpm", "1000000"),
    }
    # one thread each: three servers spinning two threads apiece starve two cores
    upstreams = [start_llama_server(smollm2_path, "--n_threads", "1", n_ctx=512) for _ in range(3)]
    config = {
        "models": {
            "tiny": {"backend": "openai", "model": "smollm2",
                     "base_urls": [url for _, url in upstreams],
                     "options": {"replica_cooldown_s": 60, "timeout_s": 60}},
        },
        "serve": {"models": ["tiny"]},
    }  # fmt: skip
    gateways = []
    try:
        env = {"LLMPICK_LOG_SECRET": "shared-by-the-replicas-0123456789"}
        flags = ["--db", "gw.db", "--redis", shared, "--access-log", "access.jsonl",
                 "--drain-deadline", "60"]  # fmt: skip
        for name in ("a", "b"):
            workdir = tmp / name
            workdir.mkdir()
            gateways.append(start_gateway(workdir, config, *flags, env=env, capture=True))
        yield {"keys": keys, "redis": shared, "upstreams": upstreams, "gateways": gateways,
               "dir": tmp}  # fmt: skip
    finally:
        for proc, _ in gateways:
            if proc.poll() is None:
                stop(proc)
        for proc, _ in upstreams:
            proc.kill()
            proc.wait(10)


def _clients(deployment: dict[str, object], key: str) -> list[openai.AsyncOpenAI]:
    return [
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)
        for _, url in deployment["gateways"]  # type: ignore[attr-defined]
    ]


async def _usage_agrees(deployment: dict[str, object], name: str) -> tuple[int, int, int]:
    """The key's usage summed over both gateways' stores equals the usage in Redis."""
    tmp = Path(str(deployment["dir"]))
    with open_store(tmp / "admin.db") as admin:
        key = KeyStore(admin).find(name)
    assert key is not None
    in_stores = [0, 0, 0]
    for gateway in ("a", "b"):
        with open_store(tmp / gateway / "gw.db") as store:
            usage = KeyStore(store).usage(key.id)
        for i, n in enumerate((usage.requests, usage.prompt_tokens, usage.completion_tokens)):
            in_stores[i] += n
    limiter = Limiter(str(deployment["redis"]))
    try:
        in_redis = await limiter.usage(key.id)
    finally:
        await limiter.close()
    totals = (in_redis.requests, in_redis.prompt_tokens, in_redis.completion_tokens)
    assert tuple(in_stores) == totals
    return totals


async def test_one_rpm_budget_across_two_gateways(deployment: dict[str, object]) -> None:
    clients = _clients(deployment, deployment["keys"]["budget"])  # type: ignore[index]

    async def one(i: int) -> int:
        try:
            await clients[i % 2].chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
            )
            return 200
        except openai.RateLimitError as exc:
            assert exc.response.headers["retry-after"]
            return 429

    statuses = await asyncio.gather(*(one(i) for i in range(30)))
    for client in clients:
        await client.close()
    assert (statuses.count(200), statuses.count(429)) == (BUDGET_RPM, 30 - BUDGET_RPM)
    requests, _, completion = await _usage_agrees(deployment, "budget")
    assert requests == BUDGET_RPM and completion > 0


async def test_an_upstream_killed_during_a_load_run(deployment: dict[str, object]) -> None:
    clients = _clients(deployment, deployment["keys"]["load"])  # type: ignore[index]
    doomed = deployment["upstreams"][2][0]  # type: ignore[index]
    outcomes: list[tuple[str, bool]] = []  # ("ok" | error, whether text had arrived)
    killed = asyncio.Event()
    done_before_kill = asyncio.Semaphore(0)

    async def one(i: int) -> None:
        streamed = False
        try:
            stream = await clients[i % 2].chat.completions.create(
                model="tiny", stream=True, max_tokens=16,
                messages=[{"role": "user", "content": f"Tell me fact number {i} about the sea."}],
            )  # fmt: skip
            async for chunk in stream:
                streamed = streamed or bool(chunk.choices and chunk.choices[0].delta.content)
            outcomes.append(("ok", streamed))
        except openai.APIError as exc:
            outcomes.append((f"{type(exc).__name__}: {exc}", streamed))
        done_before_kill.release()

    async def killer() -> None:
        for _ in range(4):
            await done_before_kill.acquire()
        doomed.kill()  # mid-run: other requests are in flight on every replica
        killed.set()

    limit = asyncio.Semaphore(6)

    async def bounded(i: int) -> None:
        async with limit:
            await one(i)

    start = time.monotonic()
    await asyncio.wait_for(asyncio.gather(killer(), *(bounded(i) for i in range(24))), 300)
    for client in clients:
        await client.close()
    assert killed.is_set() and doomed.wait(10) is not None
    assert len(outcomes) == 24, f"some requests hung ({time.monotonic() - start:.0f} s)"
    failed = [o for o in outcomes if o[0] != "ok"]
    # the only failures allowed are streams cut after their first text
    assert all(streamed for _, streamed in failed), outcomes
    assert len(failed) <= 2, outcomes
    doomed_url = deployment["upstreams"][2][1]  # type: ignore[index]
    for _, url in deployment["gateways"]:  # type: ignore[attr-defined]
        ready = httpx.get(f"{url}/ready", headers=_auth(deployment), timeout=30)
        assert ready.status_code == 200, ready.text  # two replicas of three still answer
        replicas = {r["base_url"]: r for r in ready.json()["models"][0]["replicas"]}
        assert not replicas[doomed_url]["healthy"] and replicas[doomed_url]["failures"] >= 1
        assert sum(r["served"] for r in replicas.values()) >= 12 - len(failed)
    requests, prompt, completion = await _usage_agrees(deployment, "load")
    assert requests == 24 and prompt > 0 and completion > 0


def _auth(deployment: dict[str, object]) -> dict[str, str]:
    return {"Authorization": f"Bearer {deployment['keys']['load']}"}  # type: ignore[index]


def test_sigterm_drains_one_gateway_while_the_other_serves(deployment: dict[str, object]) -> None:
    (proc_b, url_b), (_, url_a) = deployment["gateways"][1], deployment["gateways"][0]  # type: ignore[index]
    key = deployment["keys"]["load"]  # type: ignore[index]
    auth = {"Authorization": f"Bearer {key}"}
    client = openai.OpenAI(base_url=f"{url_b}/v1", api_key=key, max_retries=0, timeout=120)
    stream = client.chat.completions.create(
        model="tiny", stream=True, max_tokens=120, temperature=0,
        messages=[{"role": "user", "content": "Count from 1 to 200, separated by commas."}],
    )  # fmt: skip
    pieces, finish = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            if len(pieces) == 1:
                proc_b.send_signal(signal.SIGTERM)
                ready = httpx.get(f"{url_b}/ready", headers=auth, timeout=10)
                assert ready.status_code == 503, ready.text
                body = {"model": "tiny", "messages": [{"role": "user", "content": "x"}]}
                late = httpx.post(f"{url_b}/v1/chat/completions", json=body, headers=auth)
                assert late.status_code == 503 and late.json()["error"]["code"] == "shutting_down"
                elsewhere = httpx.post(
                    f"{url_a}/v1/chat/completions", headers=auth, timeout=60,
                    json={**body, "max_tokens": 2},
                )  # fmt: skip
                assert elsewhere.status_code == 200
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    client.close()
    assert finish in {"length", "stop"} and len(pieces) > 1
    assert proc_b.wait(60) == 0
    log = (Path(str(deployment["dir"])) / "b" / "access.jsonl").read_text().splitlines()
    last = json.loads(log[-1])
    assert (last["status"], last["stream"], last["completion_tokens"]) == (200, True, len(pieces))
