"""What do keys, limits and the access log cost per request? (measured on this machine)

Runs the policy's per-request path (``authenticate`` → ``admit`` → 16 ×
``on_output_tokens`` → ``on_finish`` with an HMAC access-log line and the store's usage
row) with limits in memory and in a real redis-server on loopback, side by side in one
run, rounds alternating, and prints p50/p95 per request and the cost of a burst of
concurrent admits. The gateway's budget for its own overhead is 2 ms p50 (issue 9).

Run: ``PYTHONPATH=src python benchmarks/security_overhead.py [--requests 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from starlette.requests import HTTPConnection

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import start_redis_server
from llmpick.serve.accesslog import AccessLog
from llmpick.serve.security import SecurityOptions, SecurityPolicy
from llmpick.store import open_store


async def _one(policy: SecurityPolicy, conn: HTTPConnection, i: int) -> float:
    start = time.perf_counter()
    who = await policy.authenticate(conn)
    await policy.admit(who, "auto", 40, 16)
    for _ in range(16):
        await policy.on_output_tokens(who, "auto", 1)
    record = {
        "request_id": str(i), "endpoint": "/v1/chat/completions", "key_name": who.key_name,
        "model": "m", "status": 200, "prompt_tokens": 40, "completion_tokens": 16,
    }  # fmt: skip
    await policy.on_finish(record, f"prompt {i}", "output")
    return time.perf_counter() - start


async def _setup(tmp: Path, name: str, redis_url: str | None) -> tuple[SecurityPolicy, str]:
    store = open_store(tmp / f"{name}.db")
    log = AccessLog(tmp / f"{name}.jsonl", b"s" * 32)
    policy = SecurityPolicy(store, SecurityOptions(redis_url=redis_url), access_log=log)
    _, secret = policy.keys.create("bench", rpm=10**6, tpm=10**9)
    if redis_url:
        policy.keys.sync_to_redis(redis_url)
    return policy, secret


async def main(requests: int) -> None:
    proc, redis_url = start_redis_server()
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            policies = {
                "memory": await _setup(tmp, "memory", None),
                "redis": await _setup(tmp, "redis", redis_url),
            }
            times: dict[str, list[float]] = {k: [] for k in policies}
            for i in range(requests):  # alternate, so noise hits both alike
                for name, (policy, secret) in policies.items():
                    headers = [(b"authorization", f"Bearer {secret}".encode())]
                    conn = HTTPConnection({"type": "http", "path": "/v1/x", "headers": headers})
                    times[name].append(await _one(policy, conn, i))
            print("per request (authenticate, admit, 16 output counts, log line + usage row):")
            for name, values in times.items():
                values.sort()
                p50 = statistics.median(values) * 1000
                p95 = values[int(0.95 * len(values))] * 1000
                print(f"  {name:6s} p50 {p50:.3f} ms  p95 {p95:.3f} ms  (n={len(values)})")
            for name, (policy, _) in policies.items():
                start = time.perf_counter()
                await asyncio.gather(
                    *(policy.limiter.admit(f"burst-{name}", rpm=20, tpm=None, prompt_tokens=1)
                      for _ in range(20))
                )  # fmt: skip
                print(
                    f"  {name:6s} burst of 20 admits: {(time.perf_counter() - start) * 1000:.1f} ms"
                )
            redis_client = policies["redis"][0].limiter.redis
            assert redis_client is not None
            pings = []
            for _ in range(200):
                start = time.perf_counter()
                await redis_client.ping()  # type: ignore[misc]
                pings.append(time.perf_counter() - start)
            print(f"  one Redis round trip (PING) p50 {statistics.median(pings) * 1000:.3f} ms")
            for policy, _ in policies.values():
                await policy.close()
    finally:
        proc.terminate()
        proc.wait(10)
        assert isinstance(proc, subprocess.Popen)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    asyncio.run(main(parser.parse_args().requests))
