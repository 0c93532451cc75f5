"""Load through keys + Redis limits with Redis SIGKILLed mid-run and restarted (issue 19).

Starts Debian's redis-server and ``llmpick serve`` (SmolLM2, ``--redis``,
``--access-log``) on loopback, makes two keys (one unlimited, one at
``--rpm 10``), then sends requests from ``--workers`` threads for
``--seconds``; Redis is SIGKILLed at a third of the run and restarted at two
thirds. Checks: no 500, no request past its deadline (``--timeout`` + 2 s), the
RPM limit refuses again after the restart, and one access-log line per request
(refused ones included). Prints the counts by phase and status.

    .venv/bin/python benchmarks/redis_failover.py --seconds 30
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import create_key, free_port, start_gateway, wait_for_port  # noqa: E402

MODEL = "smollm2-135m-instruct"


def _redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(proc, port, "redis-server", timeout=20)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="failover-"))
    port = free_port()
    redis = _redis(port)
    url_redis = f"redis://127.0.0.1:{port}/0"
    keys = {"free": create_key(work, "free", "--redis", url_redis),
            "rpm10": create_key(work, "rpm10", "--rpm", "10", "--redis", url_redis)}  # fmt: skip
    log = work / "access.jsonl"
    gateway, url = start_gateway(
        work, {"serve": {"models": [MODEL], "default_max_tokens": 2}},
        "--redis", url_redis, "--access-log", str(log), "--timeout", str(args.timeout),
    )  # fmt: skip
    results: list[tuple[str, str, int, float]] = []
    phase = ["before"]
    stop_at = time.monotonic() + args.seconds

    def worker(i: int) -> None:
        name = "rpm10" if i % 2 else "free"
        with httpx.Client(timeout=args.timeout + 10) as client:
            while time.monotonic() < stop_at:
                started, when = time.monotonic(), phase[0]
                try:
                    status = client.post(
                        f"{url}/v1/chat/completions",
                        json={"model": MODEL, "max_tokens": 2,
                              "messages": [{"role": "user", "content": "Hi"}]},
                        headers={"authorization": f"Bearer {keys[name]}"},
                    ).status_code  # fmt: skip
                except httpx.HTTPError:
                    status = -1
                results.append((when, name, status, time.monotonic() - started))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
    for t in threads:
        t.start()
    time.sleep(args.seconds / 3)
    redis.send_signal(signal.SIGKILL)
    redis.wait()
    phase[0] = "redis down"
    time.sleep(args.seconds / 3)
    phase[0] = "restarting"
    redis = _redis(port)
    phase[0] = "after restart"
    for t in threads:
        t.join()
    gateway.terminate()
    gateway.wait(60)
    redis.terminate()
    counts = collections.Counter((p, n, s) for p, n, s, _ in results)
    print(f"{'phase':<14} {'key':<6} {'status':>6} {'requests':>9}")
    for (p, n, s), c in sorted(counts.items()):
        print(f"{p:<14} {n:<6} {s:>6} {c:>9}")
    lines = log.read_text().splitlines()
    worst = max(d for *_, d in results)
    checks = {
        "no 500 and no broken connection": not any(s in (500, -1) for _, _, s, _ in results),
        f"none past the deadline ({args.timeout:g} s + 2)": worst <= args.timeout + 2,
        "rpm10 refused (429) again after restart": counts[("after restart", "rpm10", 429)] > 0,
        "an access-log line per request": len(lines) >= len(results),
    }
    print(f"\nrequests {len(results)}, access-log lines {len(lines)}, slowest {worst:.2f} s")
    print(json.dumps(checks, indent=1))
    os.environ.pop("_", None)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
