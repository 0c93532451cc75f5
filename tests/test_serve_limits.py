"""Per-key limits (``limits`` library): exact under a concurrent burst, in one process and
across two processes sharing a real redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmpick.errors import RequestRejectedError
from llmpick.serve.limits import Limiter

REPO = Path(__file__).resolve().parents[1]

# one process of the cross-process test: wait for a shared start time, then burst
_BURST = """
import asyncio, json, sys, time
from llmpick.serve.limits import Limiter
from llmpick.errors import RequestRejectedError

async def main(url, key, n, start):
    limiter = Limiter(url)
    await limiter.check_storage()
    async def one():
        try:
            await limiter.admit(key, rpm=20, tpm=None, prompt_tokens=3)
            return 1
        except RequestRejectedError:
            return 0
    await asyncio.sleep(max(0.0, start - time.time()))
    results = await asyncio.gather(*(one() for _ in range(n)))
    await limiter.close()
    print(json.dumps(sum(results)))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


async def _burst(limiter: Limiter, key: str, n: int, **limits: int | None) -> list[int]:
    async def one() -> int:
        try:
            await limiter.admit(key, prompt_tokens=1, **limits)
            return 200
        except RequestRejectedError as exc:
            return exc.status

    return await asyncio.gather(*(one() for _ in range(n)))


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    """A limiter in memory, then one in a real redis-server."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    limiter = Limiter(url)
    yield limiter
    await limiter.close()


async def test_burst_of_50_against_20_rpm_lets_exactly_20_through(limiter: Limiter) -> None:
    key = uuid.uuid4().hex
    statuses = await _burst(limiter, key, 50, rpm=20, tpm=None)
    assert statuses.count(200) == 20 and statuses.count(429) == 30
    with pytest.raises(RequestRejectedError) as info:
        await limiter.admit(key, rpm=20, tpm=None, prompt_tokens=1)
    assert info.value.retry_after is not None and 1 <= info.value.retry_after <= 60
    assert "20 requests per minute" in info.value.message
    assert (await limiter.usage(key)).requests == 20


async def test_tokens_per_minute_reserve_prompt_and_output_cap(limiter: Limiter) -> None:
    """TPM is a bound: admission reserves prompt + max_tokens, settle refunds the unused."""
    key = uuid.uuid4().hex
    await limiter.admit(key, rpm=None, tpm=100, prompt_tokens=40, output_tokens=50)
    for _ in range(5):  # output counted chunk by chunk as it streams (usage only)
        await limiter.add_output(key, tpm=100, tokens=10)
    usage = await limiter.usage(key)
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (1, 40, 50)
    # 90 of 100 reserved: a request that could use 11 more is refused before it runs
    with pytest.raises(RequestRejectedError) as info:
        await limiter.admit(key, rpm=None, tpm=100, prompt_tokens=1, output_tokens=10)
    assert info.value.status == 429 and info.value.code == "tpm_limit_exceeded"
    await limiter.settle(key, tpm=100, reserved=90, used=60)  # 30 unused come back
    await limiter.admit(key, rpm=None, tpm=100, prompt_tokens=10, output_tokens=30)
    with pytest.raises(RequestRejectedError):
        await limiter.admit(key, rpm=None, tpm=100, prompt_tokens=1)
    with pytest.raises(RequestRejectedError) as too_big:
        await limiter.admit(uuid.uuid4().hex, rpm=None, tpm=100, prompt_tokens=60,
                            output_tokens=41)  # fmt: skip
    assert too_big.value.status == 400 and "shorten" in too_big.value.message


async def test_prompt_estimate_is_settled_to_the_models_count(limiter: Limiter) -> None:
    key = uuid.uuid4().hex
    await limiter.admit(key, rpm=None, tpm=100, prompt_tokens=0)  # estimate of "Hi"
    await limiter.settle_prompt(key, tpm=100, tokens=31)  # the upstream counted 31
    assert (await limiter.usage(key)).prompt_tokens == 31
    await limiter.admit(key, rpm=None, tpm=100, prompt_tokens=69)  # 100 of 100 used
    with pytest.raises(RequestRejectedError):
        await limiter.admit(key, rpm=None, tpm=100, prompt_tokens=1)
    await limiter.settle_prompt(key, tpm=100, tokens=-9)  # an estimate above the count
    assert (await limiter.usage(key)).prompt_tokens == 91


@pytest.mark.slow
async def test_burst_of_50_in_two_processes_sharing_redis_lets_exactly_20_through(
    redis_url: str,
) -> None:
    key = uuid.uuid4().hex
    start = time.time() + 3.0
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BURST, redis_url, key, "25", str(start)],
            stdout=subprocess.PIPE,
            env=env,
        )
        for _ in range(2)
    ]
    accepted = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(accepted) == 20, accepted
    limiter = Limiter(redis_url)
    try:
        assert (await limiter.usage(key)).requests == 20
    finally:
        await limiter.close()
