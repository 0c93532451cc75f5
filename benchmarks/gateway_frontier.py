"""What the gateway adds, measured like the public gateway boards, side by side with direct.

One instant OpenAI-compatible upstream on 127.0.0.1 (a raw ASGI app: a fixed 8-word
answer; streamed with 2 ms between chunks, so gaps are real) is called directly and
through ``llmpick serve`` variants, all in one run, rounds rotating the order:

- server: ``h11+asyncio`` vs ``httptools+uvloop`` (the gateway's ``http_parser`` and
  ``event_loop``), both without keys;
- features, each on top of the previous one: ``keys`` (bearer keys from the store),
  ``+redis`` (RPM/TPM limits in a real redis-server), ``+log`` (HMAC access log).

Reported: added latency at concurrency 1 (p50 of paired differences and p99 of each
side), the throughput frontier (requests/s at p99 <= 5, 10, 50 ms over concurrency
1..64), added time to first token and inter-chunk gap on streams, the per-request
cost of each feature, and RSS over a long run at concurrency 32 (after the first
tenth and at the end). The client is a minimal keep-alive HTTP/1.1 client, so its own
cost stays small next to what is measured; client, gateway and upstream share the
machine's cores, as they do on one host.

    python benchmarks/gateway_frontier.py [--requests 300] [--rounds 5] [--long 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import itertools

from conftest import free_port, start_redis_server, wait_for_port

UPSTREAM_APP = r"""
import asyncio, json, time
WORDS = ["alpha", " bravo", " charlie", " delta", " echo", " foxtrot", " golf", " hotel"]
USAGE = {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()

def _doc(kind, choice, **extra):
    return {"id": "x", "created": int(time.time()), "model": "m", "object": kind,
            "choices": [choice], **extra}

async def _read(receive):
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"].endswith("/models"):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": MODELS})
        return
    body = json.loads(await _read(receive))
    if not body.get("stream"):
        doc = _doc("chat.completion", {"index": 0, "finish_reason": "stop",
                   "message": {"role": "assistant", "content": "".join(WORDS)}}, usage=USAGE)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(doc).encode()})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    for i, w in enumerate(WORDS):
        if i:
            await asyncio.sleep(0.002)
        doc = _doc("chat.completion.chunk",
                   {"index": 0, "delta": {"content": w}, "finish_reason": None})
        await send({"type": "http.response.body", "more_body": True,
                    "body": b"data: " + json.dumps(doc).encode() + b"\n\n"})
    end = _doc("chat.completion.chunk", {"index": 0, "delta": {}, "finish_reason": "stop"},
               usage=USAGE)
    await send({"type": "http.response.body",
                "body": b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n"})
"""
WORDS = [b"alpha", b"bravo", b"charlie", b"delta", b"echo", b"foxtrot", b"golf", b"hotel"]
PATTERNS = [re.compile(rb'"content":\s*"\s?' + w) for w in WORDS]
THRESHOLDS_MS = (5, 10, 50)
LEVELS = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class Side:
    """One way to reach the upstream: directly, or through one gateway variant."""

    name: str
    port: int
    path: str
    model: str
    key: str | None = None
    pid: int | None = None
    lat: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    gap: list[float] = field(default_factory=list)

    def head(self, body: bytes) -> bytes:
        auth = f"Authorization: Bearer {self.key}\r\n" if self.key else ""
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{auth}\r\n"
        ).encode()

    def request(self, stream: bool) -> bytes:
        body = json.dumps(
            {"model": self.model, "messages": [{"role": "user", "content": "Count to eight."}],
             "max_tokens": 8, "temperature": 0, "stream": stream}
        ).encode()  # fmt: skip
        return self.head(body) + body


class Conn:
    """A keep-alive HTTP/1.1 connection: one request at a time, arrival time of each chunk."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> tuple[int, list[tuple[float, bytes]]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        lower = head.lower()
        pieces: list[tuple[float, bytes]] = []
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                pieces.append((time.perf_counter(), data))
        else:
            length = int(re.search(rb"content-length:\s*(\d+)", lower).group(1))  # type: ignore[union-attr]
            pieces.append((time.perf_counter(), await self.reader.readexactly(length)))
        if b"connection: close" in lower:
            self.close()
        return status, pieces

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def timed(conn: Conn, raw: bytes) -> tuple[float, list[tuple[float, bytes]]]:
    start = time.perf_counter()
    status, pieces = await conn.send(raw)
    if status != 200:
        raise SystemExit(f"HTTP {status}: {pieces[-1][1][:300]!r}")
    return start, pieces


async def latency_rounds(sides: list[Side], n: int, rounds: int) -> None:
    """Concurrency 1, unstreamed then streamed; order rotates each round."""
    conns = {s.name: Conn(s.port) for s in sides}
    plain = {s.name: s.request(False) for s in sides}
    streamed = {s.name: s.request(True) for s in sides}
    for s in sides:  # warm-up: connections, upstream pools, caches
        for _ in range(20):
            await timed(conns[s.name], plain[s.name])
            await timed(conns[s.name], streamed[s.name])
    for r in range(rounds):
        order = sides[r % len(sides) :] + sides[: r % len(sides)]
        for _ in range(n):
            for s in order:
                start, pieces = await timed(conns[s.name], plain[s.name])
                s.lat.append(pieces[-1][0] - start)
        for _ in range(max(1, n // 3)):
            for s in order:
                start, pieces = await timed(conns[s.name], streamed[s.name])
                seen = []
                for pattern in PATTERNS:
                    seen.append(next(t for t, data in pieces if pattern.search(data)))
                s.ttft.append(seen[0] - start)
                s.gap.extend(b - a for a, b in itertools.pairwise(seen))
    for c in conns.values():
        c.close()


async def level(side: Side, concurrency: int, seconds: float) -> tuple[float, float]:
    """Requests/s and p99 latency (ms) with ``concurrency`` clients for ``seconds``."""
    raw = side.request(False)
    times: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        conn = Conn(side.port)
        await timed(conn, raw)
        while time.perf_counter() < stop_at:
            start, pieces = await timed(conn, raw)
            times.append(pieces[-1][0] - start)
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(times) / (time.perf_counter() - t0), pct(times, 99) * 1000


async def frontier(sides: list[Side], seconds: float) -> dict[str, dict[int, tuple[float, float]]]:
    out: dict[str, dict[int, tuple[float, float]]] = {s.name: {} for s in sides}
    for c in LEVELS:
        for s in sides:
            out[s.name][c] = await level(s, c, seconds)
    return out


async def long_run(side: Side, total: int, concurrency: int = 32) -> tuple[float, float]:
    """RSS (MiB) of the gateway after the first tenth of ``total`` requests and at the end."""
    raw = side.request(False)
    left = [total]
    marks: list[float] = []
    proc = psutil.Process(side.pid)

    async def worker() -> None:
        conn = Conn(side.port)
        while left[0] > 0:
            left[0] -= 1
            await timed(conn, raw)
            if left[0] == total * 9 // 10:
                marks.append(proc.memory_info().rss / 2**20)
        conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return marks[0], proc.memory_info().rss / 2**20


def pct(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(len(ys) * q / 100))]


def ms(x: float) -> str:
    return f"{x * 1000:.3f}"


def start_gateway(
    work: Path, name: str, upstream: str, serve: dict[str, object], key: bool, redis: str | None
) -> Side:
    folder = work / name
    folder.mkdir()
    port = free_port()
    config = {
        "models": {"instant": {"backend": "openai", "model": "m", "base_url": upstream,
                               "options": {"max_retries": 0}}},
        "serve": {"models": ["instant"], "port": port,
                  "pool": {"remote_concurrency": 256, "max_queue": 4096}, **serve},
    }  # fmt: skip
    (folder / "llmpick.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    secret = None
    if key:
        args = ["keys", "create", "--name", "bench", "--rpm", "100000000", "--tpm", "10000000000"]
        args += ["--db", "gw.db"] + (["--redis", redis] if redis else [])
        out = subprocess.run(
            [sys.executable, "-m", "llmpick", *args], cwd=folder, capture_output=True, text=True
        )
        secret = out.stdout.strip().splitlines()[-1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpick", "serve", "--port", str(port), "--db", "gw.db"],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=(folder / "err.log").open("wb"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    wait_for_port(proc, port, f"gateway {name}", 60)
    return Side(name, port, "/v1/chat/completions", "instant", key=secret, pid=proc.pid)


def report(sides: list[Side], fr: dict[str, dict[int, tuple[float, float]]]) -> dict[str, object]:
    direct = sides[0]
    rows: dict[str, object] = {}
    print(f"\n{'side':<22}{'p50 ms':>9}{'p99 ms':>9}{'added p50':>11}{'added p99':>11}"
          f"{'+TTFT p50':>11}{'+gap p50':>10}  req/s at p99<=5/10/50 ms")  # fmt: skip
    for s in sides:
        added = [g - d for d, g in zip(direct.lat, s.lat, strict=True)]
        front = [max((rps for rps, p99 in fr[s.name].values() if p99 <= t), default=0.0)
                 for t in THRESHOLDS_MS]  # fmt: skip
        row = {
            "p50_ms": statistics.median(s.lat) * 1000, "p99_ms": pct(s.lat, 99) * 1000,
            "added_p50_ms": statistics.median(added) * 1000,
            "added_p99_ms": (pct(s.lat, 99) - pct(direct.lat, 99)) * 1000,
            "added_ttft_p50_ms": (statistics.median(s.ttft) - statistics.median(direct.ttft))
            * 1000,
            "added_gap_p50_ms": (statistics.median(s.gap) - statistics.median(direct.gap)) * 1000,
            "frontier_rps": dict(zip([f"p99<={t}ms" for t in THRESHOLDS_MS], front, strict=True)),
            "levels": {c: {"rps": r, "p99_ms": p} for c, (r, p) in fr[s.name].items()},
        }  # fmt: skip
        rows[s.name] = row
        print(f"{s.name:<22}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
              f"{row['added_p50_ms']:>11.3f}{row['added_p99_ms']:>11.3f}"
              f"{row['added_ttft_p50_ms']:>11.3f}{row['added_gap_p50_ms']:>10.3f}  "
              + " / ".join(f"{f:.0f}" for f in front))  # fmt: skip
    print("\nfrontier as a share of direct (p99 <= 5 / 10 / 50 ms):")
    base = rows[direct.name]["frontier_rps"]  # type: ignore[index]
    for name, row in rows.items():
        shares = [row["frontier_rps"][k] / base[k] if base[k] else float("nan") for k in base]  # type: ignore[index]
        print(f"  {name:<22}" + " / ".join(f"{x:.2f}" for x in shares))
    return rows


def feature_costs(rows: dict[str, object]) -> dict[str, float]:
    chain = ["httptools+uvloop", "keys", "keys+redis", "keys+redis+log"]
    out = {}
    print("\nper-request cost of each feature (added p50 difference, ms):")
    for before, after in itertools.pairwise(chain):
        if before in rows and after in rows:
            cost = rows[after]["added_p50_ms"] - rows[before]["added_p50_ms"]  # type: ignore[index]
            out[after] = cost
            print(f"  {after:<22}{cost:+.3f}")
    return out


async def measure(sides: list[Side], args: argparse.Namespace) -> dict[str, object]:
    await latency_rounds(sides, args.requests, args.rounds)
    fr = await frontier(sides, args.level_seconds)
    rows = report(sides, fr)
    out: dict[str, object] = {"sides": rows, "feature_cost_ms": feature_costs(rows)}
    if args.long:
        gw = next(s for s in sides if s.name == "httptools+uvloop")
        first, last = await long_run(gw, args.long)
        growth = last / first - 1
        print(f"\nRSS over {args.long:,} requests at concurrency 32: {first:.1f} MiB after "
              f"the first tenth, {last:.1f} MiB at the end ({growth:+.1%})")  # fmt: skip
        out["rss_mib"] = {"after_first_tenth": first, "end": last, "growth": growth}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per side and round, c=1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--level-seconds", type=float, default=2.0, help="per frontier level")
    parser.add_argument("--long", type=int, default=0, help="requests of the RSS run (100000)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmpick-frontier-"))
    (work / "upstream.py").write_text(UPSTREAM_APP, encoding="utf-8")
    procs: list[subprocess.Popen[bytes]] = []
    redis_proc, redis_url = start_redis_server()
    try:
        up = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "upstream:app", "--port", str(up), "--http",
             "httptools", "--loop", "uvloop", "--log-level", "warning", "--no-access-log"],
            cwd=work,
        ))  # fmt: skip
        wait_for_port(procs[-1], up, "upstream", 60)
        upstream = f"http://127.0.0.1:{up}/v1"
        sides = [Side("direct", up, "/v1/chat/completions", "m")]
        variants = [
            ("h11+asyncio", {"http_parser": "h11", "event_loop": "asyncio"}, False),
            ("httptools+uvloop", {}, False),
            ("keys", {}, True),
            ("keys+redis", {"security": {"redis_url": redis_url}}, True),
            ("keys+redis+log", {"security": {"redis_url": redis_url,
                                             "access_log": "access.jsonl"}}, True),
        ]  # fmt: skip
        for name, serve, key in variants:
            redis = serve.get("security", {}).get("redis_url")  # type: ignore[attr-defined]
            sides.append(start_gateway(work, name, upstream, serve, key, redis))
        print(f"machine: {os.cpu_count()} logical cores; client, upstream and "
              f"{len(variants)} gateways on 127.0.0.1")  # fmt: skip
        out = asyncio.run(measure(sides, args))
        if args.out:
            args.out.write_text(json.dumps(out, indent=2), encoding="utf-8")
    finally:
        for s in sides[1:] if "sides" in locals() else []:
            if s.pid:
                psutil.Process(s.pid).terminate()
        for p in procs:
            p.terminate()
        redis_proc.terminate()


if __name__ == "__main__":
    main()
