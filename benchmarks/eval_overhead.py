"""How much does the eval harness cost on top of the generations it runs?

Two measurements, printed side by side (all figures measured on this machine):

1. Local model (bundled SmolLM2 through llama.cpp in this process): the wall
   time of ``run_eval`` against the sum of the generation times it recorded.
   Target: overhead <= 5%. Reported for the matrix phase (scheduling, commits,
   scoring) and for the whole call (plus model load and file hashing).
2. llama-cpp-python's OpenAI-compatible server on 127.0.0.1, concurrency 8:
   the runner's request throughput against a plain ``openai.AsyncOpenAI``
   client sending the same streamed requests. Target: >= 90%. The server
   serves one request at a time (one slot); that is fine for a ratio. It runs
   with ``--interrupt_requests False``: by default each new request cuts the
   stream in progress short, so "throughput" would count empty answers.
   Rounds alternate plain/runner and the medians are compared, because on a
   shared machine single timings are noisy.

Run: ``python benchmarks/eval_overhead.py [--rows 16] [--max-tokens 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmpick.backends.base import SamplingParams
from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.config import default_cache_dir
from llmpick.context import Context
from llmpick.evaluate import Dataset, RunOptions, run_eval
from llmpick.evaluate.dataset import build_rows


def make_dataset(rows: int) -> Dataset:
    records = [
        {"id": str(i), "prompt": f"Write one short sentence about the number {i}.", "expected": "x"}
        for i in range(rows)
    ]
    columns, built, expected = build_rows(records, source="bench")
    return Dataset(
        name="bench", source="bench", columns=columns, rows=built, expected_column=expected
    )


def local_overhead(rows: int, max_tokens: int, workdir: Path) -> dict[str, float]:
    params = SamplingParams.model_validate({"max_tokens": max_tokens, "seed": 0})
    started = time.perf_counter()
    result = run_eval(
        Context(),
        make_dataset(rows),
        ["smollm2-135m-instruct"],
        ["contains"],
        params,
        workdir / "local.db",
        RunOptions(),
    )
    total = time.perf_counter() - started
    generation = result.timing["generation_s"]
    return {
        "generation_s": generation,
        "matrix_wall_s": result.timing["matrix_wall_s"],
        "call_wall_s": total,
        "matrix_overhead": result.timing["matrix_wall_s"] / generation - 1.0,
        "call_overhead": total / generation - 1.0,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
            # by default a new request interrupts the one being streamed, which
            # would end most of the plain client's requests after no tokens
            "--interrupt_requests", "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("llama_cpp.server exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start")


async def plain_client(url: str, prompts: list[str], max_tokens: int, concurrency: int) -> float:
    """Requests per second of a bare AsyncOpenAI client, streamed like the runner."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)
    slots = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> None:
        async with slots:
            stream = await client.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=0.0,
                top_p=1.0,
                seed=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for _event in stream:
                pass

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    elapsed = time.perf_counter() - started
    await client.close()
    return len(prompts) / elapsed


def runner_throughput(
    url: str, dataset: Dataset, max_tokens: int, concurrency: int, db: Path
) -> tuple[float, float]:
    """Requests per second of run_eval: (whole call, matrix phase)."""
    params = SamplingParams.model_validate({"max_tokens": max_tokens, "seed": 0})
    started = time.perf_counter()
    result = run_eval(
        Context(),
        dataset,
        [f"openai:smollm2@{url}"],
        ["contains"],
        params,
        db,
        RunOptions(concurrency=concurrency),
    )
    elapsed = time.perf_counter() - started
    n = len(dataset.rows)
    assert result.models[f"openai:smollm2@{url}"].errors == 0
    return n / elapsed, n / result.timing["matrix_wall_s"]


def server_ratio(
    rows: int, max_tokens: int, concurrency: int, rounds: int, workdir: Path
) -> dict[str, float]:
    model = BUNDLED_MODELS["smollm2-135m-instruct"].locate(default_cache_dir())
    proc, url = start_server(model)
    try:
        dataset = make_dataset(rows)
        prompts = [r.prompt for r in dataset.rows]
        asyncio.run(plain_client(url, prompts[:2], max_tokens, concurrency))  # warm up
        plain, whole, matrix = [], [], []
        for i in range(rounds):
            plain.append(asyncio.run(plain_client(url, prompts, max_tokens, concurrency)))
            # a fresh store each round, so nothing is served from the cache
            w, m = runner_throughput(url, dataset, max_tokens, concurrency, workdir / f"s{i}.db")
            whole.append(w)
            matrix.append(m)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {
        "plain_rps": statistics.median(plain),
        "runner_rps": statistics.median(whole),
        "runner_matrix_rps": statistics.median(matrix),
        "ratio": statistics.median(whole) / statistics.median(plain),
        "matrix_ratio": statistics.median(matrix) / statistics.median(plain),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        local = local_overhead(args.rows, args.max_tokens, workdir)
        print(
            f"local (smollm2, llama.cpp in process, {args.rows} rows x {args.max_tokens} tokens), "
            "measured:"
        )
        print(f"  sum of generation times   {local['generation_s']:.2f} s")
        print(
            f"  eval matrix wall time     {local['matrix_wall_s']:.2f} s  "
            f"overhead {local['matrix_overhead']:+.1%}  (target <= +5%)"
        )
        print(
            f"  whole run_eval call       {local['call_wall_s']:.2f} s  "
            f"overhead {local['call_overhead']:+.1%}  (includes model load and hashing)"
        )
        server = server_ratio(
            args.rows * 2, args.max_tokens, args.concurrency, args.rounds, workdir
        )
        print(
            f"llama_cpp.server on 127.0.0.1, concurrency {args.concurrency}, "
            f"{args.rows * 2} requests, median of {args.rounds} rounds, measured:"
        )
        print(f"  plain AsyncOpenAI client  {server['plain_rps']:.2f} req/s")
        print(
            f"  llmpick runner            {server['runner_rps']:.2f} req/s  "
            f"ratio {server['ratio']:.1%}  (target >= 90%; whole run_eval call)"
        )
        print(
            f"  llmpick runner (matrix)   {server['runner_matrix_rps']:.2f} req/s  "
            f"ratio {server['matrix_ratio']:.1%}"
        )


if __name__ == "__main__":
    main()
