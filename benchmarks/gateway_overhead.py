"""What the gateway adds: the same requests sent directly to an upstream and through it.

Two upstreams on 127.0.0.1, each measured direct vs through ``llmpick serve`` in one
run, requests interleaved so both see the same machine:

- an *instant* upstream (a minimal OpenAI-compatible app answering at once with a
  fixed 8-token completion), which isolates the gateway's own cost;
- llama-cpp-python's server with the bundled SmolLM2 (max_tokens 8).

Reported: p50/p90 latency of sequential requests and the added p50 (goal < 2 ms),
and throughput at concurrency 32 (goal ≥ 95 % of direct).

    python benchmarks/gateway_overhead.py [--requests 200] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.config import default_cache_dir

INSTANT_APP = r"""
import json, time
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
app = FastAPI()
WORDS = ["one", " two", " three", " four", " five", " six", " seven", " eight"]
@app.get("/v1/models")
async def models():
    return {"object": "list", "data": [{"id": "instant", "object": "model"}]}
@app.post("/v1/chat/completions")
async def chat(request: Request):
    body = await request.json()
    usage = {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
    base = {"id": "x", "created": int(time.time()), "model": "instant"}
    if not body.get("stream"):
        return JSONResponse({**base, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)},
             "finish_reason": "stop"}]})
    async def events():
        for w in WORDS:
            doc = {**base, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {"content": w}, "finish_reason": None}]}
            yield "data: " + json.dumps(doc) + "\n\n"
        end = {**base, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
        yield "data: " + json.dumps(end) + "\n\ndata: [DONE]\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process on port {port} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port}")


def start(args: list[str], port: int, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    wait_port(port, proc)
    return proc


async def one(client: httpx.AsyncClient, url: str, model: str) -> float:
    body = {"model": model, "messages": [{"role": "user", "content": "Count to eight."}],
            "max_tokens": 8, "temperature": 0}  # fmt: skip
    start_s = time.perf_counter()
    response = await client.post(url, json=body)
    response.raise_for_status()
    return time.perf_counter() - start_s


async def sequential(targets: dict[str, tuple[str, str]], n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in targets}
    async with httpx.AsyncClient(timeout=120) as client:
        for url, model in targets.values():  # warm-up
            await one(client, url, model)
        for _ in range(n):
            for name, (url, model) in targets.items():
                times[name].append(await one(client, url, model))
    return times


async def throughput(url: str, model: str, n: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                queue.pop()
                await one(client, url, model)

        start_s = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - start_s)


def report(label: str, seq: dict[str, list[float]], rps: dict[str, float]) -> dict[str, float]:
    direct, gateway = seq["direct"], seq["gateway"]
    p50_d, p50_g = statistics.median(direct), statistics.median(gateway)
    pairs = sorted(g - d for d, g in zip(direct, gateway, strict=True))
    added = pairs[len(pairs) // 2]
    ratio = rps["gateway"] / rps["direct"]
    print(f"\n{label}")
    print(f"  sequential p50: direct {p50_d * 1000:.2f} ms, gateway {p50_g * 1000:.2f} ms; "
          f"added p50 (paired) {added * 1000:.2f} ms")  # fmt: skip
    print(f"  throughput: direct {rps['direct']:.1f} req/s, gateway {rps['gateway']:.1f} req/s,"
          f" ratio {ratio:.3f}")  # fmt: skip
    return {"direct_p50_ms": p50_d * 1000, "gateway_p50_ms": p50_g * 1000,
            "added_p50_ms": added * 1000, "direct_rps": rps["direct"],
            "gateway_rps": rps["gateway"], "throughput_ratio": ratio}  # fmt: skip


async def measure(base: dict[str, str], gw: str, args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    for label, model, n_seq, n_rps in [
        ("instant upstream (gateway cost alone)", "instant", args.requests, args.requests * 4),
        ("llama.cpp server, SmolLM2, max_tokens 8", "llama", args.llama_requests,
         args.llama_requests),
    ]:  # fmt: skip
        direct_url = base[model] + "/chat/completions"
        targets = {"direct": (direct_url, "m"), "gateway": (gw + "/v1/chat/completions", model)}
        seq = await sequential(targets, n_seq)
        rps = {}
        for name, (url, m) in targets.items():
            rps[name] = await throughput(url, m, n_rps, args.concurrency)
        out[model] = report(label, seq, rps)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential, instant")
    parser.add_argument("--llama-requests", type=int, default=40, help="sequential, llama.cpp")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmpick-gw-bench-"))
    (work / "instant.py").write_text(INSTANT_APP, encoding="utf-8")
    procs = []
    try:
        p_instant, p_llama, p_gw = free_port(), free_port(), free_port()
        procs.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "instant:app",
                    "--port",
                    str(p_instant),
                    "--log-level",
                    "warning",
                ],
                p_instant,
                work,
            )
        )
        model = BUNDLED_MODELS["smollm2-135m-instruct"].locate(default_cache_dir())
        procs.append(start([sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                            "--port", str(p_llama), "--n_ctx", "2048", "--n_threads", "2",
                            "--interrupt_requests", "False"], p_llama))  # fmt: skip
        base = {"instant": f"http://127.0.0.1:{p_instant}/v1",
                "llama": f"http://127.0.0.1:{p_llama}/v1"}  # fmt: skip
        config = {
            "models": {name: {"backend": "openai", "model": "m", "base_url": url,
                              "options": {"max_retries": 0}}
                       for name, url in base.items()},
            "serve": {"models": list(base), "pool": {"remote_concurrency": 256, "max_queue": 1024}},
        }  # fmt: skip
        (work / "llmpick.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        procs.append(start([sys.executable, "-m", "llmpick", "serve", "--port", str(p_gw),
                            "--db", "gw.db"], p_gw, work))  # fmt: skip
        print(f"machine: {os.cpu_count()} CPUs; concurrency {args.concurrency}")
        figures = asyncio.run(measure(base, f"http://127.0.0.1:{p_gw}", args))
        if args.out:
            args.out.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
