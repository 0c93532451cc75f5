"""What keys, limits (in Redis) and the private access log cost under load: ``llmpick bench``
at concurrency 1, 8 and 32 through two gateways side by side, one with keys on and one
without, then a burst against a small RPM limit (only 429s may fail).

Both gateways front the same *instant* upstream (``gateway_overhead.INSTANT_APP``: a
fixed 8-token answer at once), so what differs is the gateway's own work. Rounds
alternate which gateway goes first, so machine noise hits both alike; medians over
rounds are printed with keyed/open ratios. Then sequential requests interleaved one by one
(keyed, open, direct to the upstream), which isolates the per-request cost best.

    PYTHONPATH=src python benchmarks/security_load.py [--requests 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))
from gateway_overhead import INSTANT_APP, free_port, start

from conftest import start_redis_server

CONCURRENCY = (1, 8, 32)


def _llmpick(cwd: Path, *args: str, key: str = "unused") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "llmpick", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "LLMPICK_BENCH_KEY": key}, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"llmpick {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
    return done.stdout


def _gateway(work: Path, upstream: str, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    work.mkdir(exist_ok=True)
    config = {
        "models": {"instant": {"backend": "openai", "model": "m", "base_url": upstream,
                               "options": {"max_retries": 0}}},
        "serve": {"models": ["instant"], "pool": {"remote_concurrency": 256, "max_queue": 1024}},
    }  # fmt: skip
    (work / "llmpick.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    cmd = [sys.executable, "-m", "llmpick", "serve", "--port", str(port), "--db", "gw.db", *flags]
    return start(cmd, port, work), f"http://127.0.0.1:{port}/v1"


def _bench(
    work: Path, url: str, key: str, requests: int, levels: str, warmup: int = 2
) -> list[dict[str, Any]]:
    """``llmpick bench`` on the gateway at ``url`` (the key from an env variable)."""
    work.mkdir(exist_ok=True)
    config = {"models": {"gw": {"backend": "openai", "model": "instant", "base_url": url,
                                "options": {"api_key_env": "LLMPICK_BENCH_KEY"}}}}  # fmt: skip
    (work / "llmpick.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    out = _llmpick(
        work, "bench", "-m", "gw", "--concurrency", levels, "--requests", str(requests),
        "--max-tokens", "8", "--prompt-tokens", "32", "--warmup", str(warmup), "--format", "json",
        "--quiet", "--db", "bench.db", key=key,
    )  # fmt: skip
    return list(json.loads(out)["results"])


def _point_figures(metrics: dict[str, Any]) -> tuple[float, float, int]:
    """(p50 end-to-end seconds, requests per second, errors) of one load point."""
    return (
        float(metrics["e2e_latency_s"]["p50"]),
        float(metrics["requests_per_second"]),
        int(metrics["errors"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="per load point and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmpick-security-load-"))
    (work / "instant.py").write_text(INSTANT_APP, encoding="utf-8")
    redis_proc, redis_url = start_redis_server()
    procs = [redis_proc]
    try:
        port = free_port()
        procs.append(start([sys.executable, "-m", "uvicorn", "instant:app", "--port", str(port),
                            "--log-level", "warning"], port, work))  # fmt: skip
        upstream = f"http://127.0.0.1:{port}/v1"
        keyed_dir = work / "keyed"
        open_proc, open_url = _gateway(work / "open", upstream)
        procs.append(open_proc)
        keyed_dir.mkdir()
        admin = ["--db", str(keyed_dir / "gw.db"), "--redis", redis_url]
        key = _llmpick(work, "keys", "create", "--name", "load", "--rpm", "1000000",
                       "--tpm", "1000000000", *admin).strip()  # fmt: skip
        small = _llmpick(work, "keys", "create", "--name", "small", "--rpm", "20", *admin).strip()
        keyed_proc, keyed_url = _gateway(
            keyed_dir, upstream, "--redis", redis_url, "--access-log", "access.jsonl"
        )
        procs.append(keyed_proc)
        print(f"machine: {os.cpu_count()} CPUs, shared with other work; instant upstream; "
              f"{args.requests} requests per point, {args.rounds} rounds alternating")  # fmt: skip
        runs: dict[str, list[list[dict[str, Any]]]] = {"keyed": [], "open": []}
        levels = ",".join(map(str, CONCURRENCY))
        for r in range(args.rounds):
            order = [("keyed", keyed_url, key), ("open", open_url, "unused")]
            for name, url, secret in order if r % 2 == 0 else reversed(order):
                runs[name].append(
                    _bench(work / f"bench-{name}", url, secret, args.requests, levels)
                )
        _report(runs)
        _interleaved({"keyed": keyed_url, "open": open_url, "direct": upstream}, key, 300)
        _burst(work, keyed_url, small)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(30)


def _report(runs: dict[str, list[list[dict[str, Any]]]]) -> None:
    print("concurrency | p50 e2e ms keyed / open (ratio) | req/s keyed / open (ratio) | errors")
    for i, level in enumerate(CONCURRENCY):
        figures = {
            name: [_point_figures(points[i]) for points in rounds] for name, rounds in runs.items()
        }
        p50 = {n: statistics.median(f[0] for f in v) * 1000 for n, v in figures.items()}
        rps = {n: statistics.median(f[1] for f in v) for n, v in figures.items()}
        errors = {n: sum(f[2] for f in v) for n, v in figures.items()}
        ratio = p50["keyed"] / p50["open"]
        print(
            f"{level:>11} | {p50['keyed']:7.2f} / {p50['open']:7.2f} ({ratio:.3f})"
            f" | {rps['keyed']:7.1f} / {rps['open']:7.1f} ({rps['keyed'] / rps['open']:.3f})"
            f" | keyed {errors['keyed']}, open {errors['open']}"
        )


def _interleaved(urls: dict[str, str], key: str, n: int) -> None:
    """Sequential requests, one to each target in turn: the per-request cost, least noisy."""
    body = {"model": "instant", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    times: dict[str, list[float]] = {name: [] for name in urls}
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(n):
            for name, url in urls.items():
                start_s = time.perf_counter()
                client.post(f"{url}/chat/completions", json=body).raise_for_status()
                times[name].append(time.perf_counter() - start_s)
    p50 = {name: statistics.median(values) * 1000 for name, values in times.items()}
    added, ratio = p50["keyed"] - p50["open"], p50["keyed"] / p50["open"]
    print(f"interleaved, sequential ({n} each): p50 keyed {p50['keyed']:.2f} ms, open"
          f" {p50['open']:.2f} ms, direct {p50['direct']:.2f} ms; keys and limits add"
          f" {added:.2f} ms (ratio {ratio:.3f})")  # fmt: skip


def _burst(work: Path, url: str, key: str) -> None:
    """40 requests at concurrency 8 with a key limited to 20 a minute: 20 answered, 20 429s."""
    point = _bench(work / "bench-burst", url, key, 40, "8", warmup=0)[0]
    messages = point["error_messages"]
    only_429 = all("429" in m for m in messages)
    print(f"burst with a 20/minute key, 40 requests at concurrency 8: {point['completed']}"
          f" answered, {point['errors']} refused; every error a 429: {only_429}"
          f" ({messages[0][:110] if messages else None!r})")  # fmt: skip


if __name__ == "__main__":
    main()
