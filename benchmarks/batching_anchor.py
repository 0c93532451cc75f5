"""llama.cpp's own numbers for the batching benchmark: the anchors llmpick is measured against.

Two tools built from the llama.cpp that llama-cpp-python vendors (same commit,
same kernels; docs/batching.md says how they were built here):

- ``llama-batched-bench``: llama.cpp's batched decode with no server and no
  Python around it, ``B`` sequences of the same prompt and output lengths: the
  ceiling of what batching buys on this machine and model;
- ``llama-server --parallel 8``: llama.cpp's continuous batching behind its
  OpenAI-compatible API, the same streams as llmpick's sweep.

Used by ``benchmarks/batching_throughput.py`` (``--batched-bench PATH``,
``--server PATH``).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import free_port, wait_for_port  # noqa: E402  (loopback helpers)


def batched_bench(
    tool: Path, model: Path, prompt_tokens: int, tokens: int, streams: tuple[int, ...],
    threads: int, rounds: int,
) -> dict[str, Any]:  # fmt: skip
    """Median decode rate (``S_TG t/s``) of llama-batched-bench at each batch size."""
    command = [
        str(tool), "-m", str(model), "-c", str(max(streams) * (prompt_tokens + tokens + 256)),
        "-b", "512", "-ub", "512", "-npp", str(prompt_tokens), "-ntg", str(tokens),
        "-npl", ",".join(map(str, streams)), "-t", str(threads), "-tb", str(threads), "-kvu",
    ]  # fmt: skip
    runs: dict[int, list[float]] = {b: [] for b in streams}
    for _ in range(rounds):
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
        for line in done.stdout.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 10 and cells[0].isdigit():
                runs[int(cells[2])].append(float(cells[7]))  # B, S_TG t/s
    median = {b: statistics.median(v) for b, v in runs.items() if v}
    return {
        "command": " ".join(command),
        "decode_tokens_per_second": median,
        "runs": runs,
        "ratio_vs_1": {b: v / median[1] for b, v in median.items()} if 1 in median else {},
    }


def server(
    tool: Path, model: Path, bodies: list[dict[str, Any]], threads: int, slot_ctx: int, rounds: int
) -> dict[str, Any]:
    """Aggregate output tokens/s of llama-server --parallel 8 at 1 and 8 concurrent streams."""
    port = free_port()
    proc = subprocess.Popen(
        [str(tool), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--parallel", "8", "-c", str(slot_ctx * 8), "-t", str(threads), "-tb", str(threads),
         "--kv-unified", "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(proc, port, "llama-server", timeout=120)
        deadline = time.monotonic() + 120
        while httpx.get(f"http://127.0.0.1:{port}/health").status_code != 200:  # loading: 503
            if time.monotonic() > deadline:
                raise RuntimeError("llama-server never became healthy")
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"

        async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> int:
            response = await client.post(url, json=body)
            response.raise_for_status()
            return int(response.json()["usage"]["completion_tokens"])

        async def rate(client: httpx.AsyncClient, n: int) -> float:
            started = time.perf_counter()
            tokens = sum(await asyncio.gather(*(one(client, b) for b in bodies[:n])))
            return tokens / (time.perf_counter() - started)

        async def run() -> dict[int, list[float]]:
            out: dict[int, list[float]] = {1: [], 8: []}
            async with httpx.AsyncClient(timeout=300) as client:
                await one(client, bodies[0])  # warm up
                for _ in range(rounds):
                    for n in (1, 8):
                        out[n].append(await rate(client, n))
            return out

        runs = asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(10)
    median = {n: statistics.median(v) for n, v in runs.items()}
    return {"output_tokens_per_second": median, "runs": runs, "ratio_8_vs_1": median[8] / median[1]}
