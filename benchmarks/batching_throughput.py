"""Continuous batching of the llamacpp backend vs one request at a time, side by side.

Measures, on the bundled SmolLM2 and this machine's cores, in one run (so that
load from other processes hits both sides alike; the sweep is repeated and
interleaved, the best round kept):

1. aggregate decode throughput at 1, 2, 4, 8, 16 concurrent streams
   (``ignore_eos``, same token count per stream) on a ``parallel: 16`` model,
   against one stream on the single-sequence path (``parallel: 1``);
   per-stream TPOT at 8; TTFT of a request arriving while 7 decode, against
   its TTFT alone;
2. ``llmpick eval`` of 100 prompts x 1 model, batched vs not (wall time, score);
3. greedy agreement: the share of the bundled sample prompts whose batched
   output equals the unbatched one;
4. optionally (``--server PATH``) llama.cpp's own ``llama-server --parallel 8``
   on the same model, prompts and token counts, as an anchor.

Run::

    PYTHONPATH=src python benchmarks/batching_throughput.py \\
        [--server /path/to/llama-server] [--parts throughput,agreement,eval]

Writes ``benchmarks/results/batching_<parts>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from llmpick.backends.base import Generation, GenerationRequest, collect
from llmpick.backends.llamacpp import LlamaCppBackend
from llmpick.context import Context

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "batching_throughput.json"
SAMPLE = ROOT / "src" / "llmpick" / "data" / "sample.jsonl"
MODEL = "smollm2-135m-instruct"
STREAMS = (1, 2, 4, 8, 16)
TOKENS = 48
PROMPTS = int(os.environ.get("BATCHING_EVAL_PROMPTS", "100"))
THREADS = 2
TOPICS = ["the sea", "a city", "the moon", "a forest", "winter", "music", "trains", "bread"]


def open_backend(parallel: int) -> LlamaCppBackend:
    context = Context()
    spec = context.resolve(MODEL)
    options = {**spec.options, "parallel": parallel, "n_ctx": 512, "n_threads": THREADS}
    backend = context.open_backend(spec.model_copy(update={"options": options}))
    assert isinstance(backend, LlamaCppBackend)
    return backend


def request(i: int, tokens: int = TOKENS) -> GenerationRequest:
    prompt = f"Write a story about {TOPICS[i % len(TOPICS)]}."
    return GenerationRequest.from_prompt(prompt, temperature=0, max_tokens=tokens, ignore_eos=True)


async def sweep_point(backend: LlamaCppBackend, streams: int) -> dict[str, float]:
    start = time.perf_counter()
    gens = await asyncio.gather(*(collect(backend, request(i)) for i in range(streams)))
    end = time.perf_counter()
    tokens = sum(g.usage.completion_tokens for g in gens)
    # decode only: from the moment every stream had its first token to the last token
    decode_from = max(g.first_token_s or start for g in gens)
    decode_tokens = sum(sum(1 for t in g.chunk_times_s if t > decode_from) for g in gens)
    tpots = [
        (g.end_s - g.first_token_s) / (g.usage.completion_tokens - 1)
        for g in gens
        if g.first_token_s is not None and g.usage.completion_tokens > 1
    ]
    return {
        "streams": streams,
        "output_tokens": tokens,
        "wall_s": end - start,
        "output_tokens_per_second": tokens / (end - start),
        "decode_tokens_per_second": decode_tokens / max(end - decode_from, 1e-9),
        "tpot_s_mean": sum(tpots) / len(tpots),
    }


async def ttft_under_load(backend: LlamaCppBackend) -> dict[str, float]:
    alone = await collect(backend, request(0, 4))
    running = [asyncio.ensure_future(collect(backend, request(i, 96))) for i in range(1, 8)]
    while backend.batch_stats()["steps"] < 3 or backend.batch_stats()["slots_in_use"] < 7:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # the seven are decoding
    arriving = await collect(backend, request(0, 4))
    await asyncio.gather(*running)
    return {
        "ttft_alone_s": alone.time_to_first_token_s or 0.0,
        "ttft_while_7_decode_s": arriving.time_to_first_token_s or 0.0,
    }


def throughput(rounds: int) -> dict[str, Any]:
    single = open_backend(1)
    batched = open_backend(16)
    best: dict[str, dict[str, float]] = {}

    def keep(name: str, point: dict[str, float]) -> None:
        old = best.get(name)
        if old is None or point["decode_tokens_per_second"] > old["decode_tokens_per_second"]:
            best[name] = point

    async def run() -> dict[str, float]:
        for _ in range(rounds):
            keep("single_path_1", await sweep_point(single, 1))
            for n in STREAMS:
                keep(f"batched_{n}", await sweep_point(batched, n))
        return await ttft_under_load(batched)

    ttft = asyncio.run(run())
    asyncio.run(single.aclose())
    asyncio.run(batched.aclose())
    base = best["single_path_1"]["decode_tokens_per_second"]
    for point in best.values():
        point["ratio_vs_single_path"] = point["decode_tokens_per_second"] / base
    return {"points": best, **ttft}


def greedy_agreement(max_tokens: int) -> dict[str, Any]:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    requests = [
        GenerationRequest.from_prompt(r["prompt"], temperature=0, max_tokens=max_tokens)
        for r in rows
    ]
    single = open_backend(1)
    batched = open_backend(8)

    async def run() -> tuple[list[Generation], list[Generation]]:
        alone = [await collect(single, r) for r in requests]
        together = await asyncio.gather(*(collect(batched, r) for r in requests))
        return alone, list(together)

    alone, together = asyncio.run(run())
    asyncio.run(single.aclose())
    asyncio.run(batched.aclose())
    same = [a.output == b.output for a, b in zip(alone, together, strict=True)]
    return {
        "prompts": len(same),
        "identical": sum(same),
        "share_identical": sum(same) / len(same),
        "differing_ids": [r["id"] for r, s in zip(rows, same, strict=True) if not s],
        "max_tokens": max_tokens,
    }


def eval_side_by_side(max_tokens: int) -> dict[str, Any]:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    out: dict[str, Any] = {"max_tokens": max_tokens, "prompts": PROMPTS}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.jsonl"
        with data.open("w") as fh:
            for k in range(PROMPTS):
                row = dict(rows[k % len(rows)])
                row["id"] = f"{row['id']}-{k}"
                if k >= len(rows):
                    row["prompt"] = f"{row['prompt']} (question {k})"
                fh.write(json.dumps(row) + "\n")
        path = Context().resolve(MODEL).model
        config = {
            "models": {
                f"smol-p{p}": {
                    "backend": "llamacpp",
                    "model": str(path),
                    "options": {"parallel": p, "n_ctx": 1024, "n_threads": THREADS},
                }
                for p in (1, 8)
            }
        }
        (Path(tmp) / "llmpick.yaml").write_text(json.dumps(config))
        for p in (8, 1):  # batched first: any warm-up cost falls on it
            command = [
                sys.executable, "-m", "llmpick", "eval", str(data), "-m", f"smol-p{p}",
                "--max-tokens", str(max_tokens), "--db", str(Path(tmp) / f"p{p}.db"),
                "--format", "json", "--no-progress", "--concurrency", "8",
                "--scorer", "contains",
            ]  # fmt: skip
            started = time.perf_counter()
            done = subprocess.run(
                command, cwd=tmp, capture_output=True, text=True, env=os.environ, check=False
            )
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"llmpick eval failed: {done.stderr[-2000:]}")
            out[f"parallel_{p}"] = {"wall_s": wall, "result": json.loads(done.stdout)}
    out["speedup"] = out["parallel_1"]["wall_s"] / out["parallel_8"]["wall_s"]
    return out


def server_anchor(server: Path, llmpick_8: float) -> dict[str, Any]:
    """llama.cpp's own server with --parallel 8, same prompts and token counts, via its API."""
    import httpx
    from tests.conftest import free_port, wait_for_port  # loopback helpers

    port = free_port()
    path = Context().resolve(MODEL).model
    proc = subprocess.Popen(
        [str(server), "-m", str(path), "--host", "127.0.0.1", "--port", str(port),
         "--parallel", "8", "-c", str(512 * 8), "-t", str(THREADS), "-tb", str(THREADS),
         "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(proc, port, "llama-server", timeout=120)
        time.sleep(1.0)

        async def one(client: httpx.AsyncClient, i: int) -> int:
            body = {
                "messages": request(i).model_dump()["messages"],
                "max_tokens": TOKENS, "temperature": 0, "ignore_eos": True,
            }  # fmt: skip
            r = await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
            r.raise_for_status()
            return int(r.json()["usage"]["completion_tokens"])

        async def run() -> float:
            best = 0.0
            async with httpx.AsyncClient(timeout=300) as client:
                await one(client, 0)
                for _ in range(2):
                    started = time.perf_counter()
                    tokens = sum(await asyncio.gather(*(one(client, i) for i in range(8))))
                    best = max(best, tokens / (time.perf_counter() - started))
            return best

        server_tps = asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "server_output_tokens_per_second_at_8": server_tps,
        "llmpick_output_tokens_per_second_at_8": llmpick_8,
        "ratio_llmpick_to_server": llmpick_8 / server_tps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server", type=Path, help="llama-server binary for the anchor")
    parser.add_argument(
        "--parts", default="throughput,agreement,eval", help="comma-separated parts to run"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "model": MODEL,
        "threads": THREADS,
        "cpu_cores": os.cpu_count(),
        "tokens_per_stream": TOKENS,
        "load_average_before": load_before,
    }
    if "throughput" in parts:
        report_throughput(result, throughput(args.rounds))
    if "agreement" in parts:
        result["greedy_agreement"] = greedy_agreement(max_tokens=32)
        g = result["greedy_agreement"]
        print(f"greedy agreement: {g['identical']}/{g['prompts']} identical")
    if args.server:
        result["anchor"] = server_anchor(
            args.server, result["throughput"]["points"]["batched_8"]["output_tokens_per_second"]
        )
        print("anchor:", result["anchor"])
    if "eval" in parts:
        result["eval"] = eval_side_by_side(max_tokens=16)
        e = result["eval"]
        print(
            f"eval 100 prompts: parallel 1 {e['parallel_1']['wall_s']:.1f} s, "
            f"parallel 8 {e['parallel_8']['wall_s']:.1f} s, speedup {e['speedup']:.2f}x"
        )
    result["load_average_after"] = os.getloadavg()
    result["busiest_processes"] = [
        f"{p.info['name']} {p.info['cpu_percent']}"
        for p in sorted(
            psutil.process_iter(["name", "cpu_percent"]),
            key=lambda p: p.info["cpu_percent"] or 0,
            reverse=True,
        )[:5]
    ]
    out = RESULTS.with_name(f"batching_{'_'.join(sorted(parts))}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"load average before {load_before}, after {result['load_average_after']}")
    print(f"wrote {out}")


def report_throughput(result: dict[str, Any], measured: dict[str, Any]) -> None:
    result["throughput"] = measured
    points = measured["points"]
    print(f"{'config':>16} {'decode tok/s':>12} {'ratio':>6} {'TPOT ms':>8} {'wall s':>7}")
    for name, p in points.items():
        print(
            f"{name:>16} {p['decode_tokens_per_second']:12.1f} {p['ratio_vs_single_path']:6.2f} "
            f"{p['tpot_s_mean'] * 1000:8.1f} {p['wall_s']:7.2f}"
        )
    t = result["throughput"]
    print(
        f"TTFT alone {t['ttft_alone_s'] * 1000:.0f} ms, "
        f"arriving while 7 decode {t['ttft_while_7_decode_s'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
