"""Continuous batching of the llamacpp backend vs one request at a time, side by side.

Measures, on a bundled model (SmolLM2 by default, ``--model gemma-3-270m``) and
this machine's cores, in one run (so that load from other processes hits both
sides alike; every part is repeated in interleaved rounds and the median kept):

1. aggregate decode throughput at 1, 2, 4, 8, 16 concurrent streams
   (``ignore_eos``, same token count per stream) on a ``parallel: 16`` model,
   against one stream on the single-sequence path (``parallel: 1``);
   per-stream TPOT at 8; TTFT of a request arriving while 7 decode, against
   its TTFT alone;
2. ``llmpick eval`` of 100 prompts x 1 model, batched vs not (wall time, score),
   as subprocesses of the real CLI;
3. greedy agreement on the bundled sample prompts: requests sent one at a time
   through the batching scheduler, then eight at a time, each against the
   single-sequence path;
4. anchors (``benchmarks/batching_anchor.py``): ``llama-batched-bench`` (llama.cpp's
   own batched decode, no Python) and ``llama-server --parallel 8``, same model,
   prompt and output lengths.

Run::

    PYTHONPATH=src python benchmarks/batching_throughput.py [--model gemma-3-270m] \\
        [--batched-bench PATH] [--server PATH] [--parts throughput,agreement,eval]

Writes ``benchmarks/results/batching_<model>_<parts>.json`` and prints tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import batching_anchor

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE = ROOT / "src" / "llmpick" / "data" / "sample.jsonl"
STREAMS = (1, 2, 4, 8, 16)
TOKENS = 48
SLOT_CTX = 512
PROMPTS = int(os.environ.get("BATCHING_EVAL_PROMPTS", "100"))
THREADS = 2
TOPICS = ["the sea", "a city", "the moon", "a forest", "winter", "music", "trains", "bread"]


def open_backend(model: str, parallel: int, **extra: Any) -> LlamaCppBackend:
    """The model with ``parallel`` slots; ``flash_attn`` as its default unless ``extra`` says."""
    context = Context()
    spec = context.resolve(model)
    options = {
        **spec.options, "parallel": parallel, "n_ctx": SLOT_CTX, "n_threads": THREADS, **extra
    }  # fmt: skip
    backend = context.open_backend(spec.model_copy(update={"options": options}))
    assert isinstance(backend, LlamaCppBackend)
    return backend


def request(i: int, tokens: int = TOKENS, topic: str | None = None) -> GenerationRequest:
    prompt = f"Write a story about {topic or TOPICS[i % len(TOPICS)]}."
    return GenerationRequest.from_prompt(prompt, temperature=0, max_tokens=tokens, ignore_eos=True)


def sample_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


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
    # topics no slot has cached (beyond the chat template both share with everything)
    alone = await collect(backend, request(0, 4, topic=f"a lighthouse {time.time_ns()}"))
    running = [asyncio.ensure_future(collect(backend, request(i, 96))) for i in range(1, 8)]
    while backend.batch_stats()["steps"] < 3 or backend.batch_stats()["slots_in_use"] < 7:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # the seven are decoding
    arriving = await collect(backend, request(0, 4, topic=f"a lighthouse {time.time_ns()}"))
    await asyncio.gather(*running)
    return {
        "ttft_alone_s": alone.time_to_first_token_s or 0.0,
        "ttft_while_7_decode_s": arriving.time_to_first_token_s or 0.0,
    }


def _median_point(points: list[dict[str, float]]) -> dict[str, Any]:
    keys = ("output_tokens_per_second", "decode_tokens_per_second", "tpot_s_mean", "wall_s")
    out: dict[str, Any] = {"streams": points[0]["streams"], "rounds": len(points)}
    for key in keys:
        values = [p[key] for p in points]
        out[key] = statistics.median(values)
        out[f"{key}_range"] = [min(values), max(values)]
    return out


def throughput(model: str, rounds: int) -> dict[str, Any]:
    single = open_backend(model, 1)
    # the batched path's default flash attention, on the single path: a reference
    single_fa = open_backend(model, 1, flash_attn=True)
    batched = open_backend(model, 16)
    runs: dict[str, list[dict[str, float]]] = {}

    async def run() -> list[dict[str, float]]:
        ttfts = []
        for _ in range(rounds):  # interleaved: both sides see the same background load
            runs.setdefault("single_path_1", []).append(await sweep_point(single, 1))
            runs.setdefault("single_path_1_fa", []).append(await sweep_point(single_fa, 1))
            for n in STREAMS:
                runs.setdefault(f"batched_{n}", []).append(await sweep_point(batched, n))
            ttfts.append(await ttft_under_load(batched))
        return ttfts

    ttfts = asyncio.run(run())
    for backend in (single, single_fa, batched):
        asyncio.run(backend.aclose())
    points = {name: _median_point(p) for name, p in runs.items()}
    base = points["single_path_1"]["decode_tokens_per_second"]
    for point in points.values():
        point["ratio_vs_single_path"] = point["decode_tokens_per_second"] / base
    ttft = {k: statistics.median(t[k] for t in ttfts) for k in ttfts[0]}
    return {"points": points, **ttft}


def greedy_agreement(model: str, max_tokens: int) -> dict[str, Any]:
    """Batched outputs vs the single path: one request at a time, then eight at a time.

    Both with flash attention (the batched path's default), so that only batching differs.
    """
    rows = sample_rows()
    requests = [
        GenerationRequest.from_prompt(r["prompt"], temperature=0, max_tokens=max_tokens)
        for r in rows
    ]
    single = open_backend(model, 1, flash_attn=True)
    batched = open_backend(model, 8)

    async def run() -> tuple[list[Generation], list[Generation], list[Generation]]:
        alone = [await collect(single, r) for r in requests]
        one_by_one = [await collect(batched, r) for r in requests]
        limit = asyncio.Semaphore(8)

        async def limited(r: GenerationRequest) -> Generation:
            async with limit:
                return await collect(batched, r)

        together = await asyncio.gather(*(limited(r) for r in requests))
        return alone, one_by_one, list(together)

    alone, one_by_one, together = asyncio.run(run())
    asyncio.run(single.aclose())
    asyncio.run(batched.aclose())

    def compare(outputs: list[Generation]) -> dict[str, Any]:
        same = [a.output == b.output for a, b in zip(alone, outputs, strict=True)]
        return {
            "identical": sum(same),
            "share_identical": sum(same) / len(same),
            "differing_ids": [r["id"] for r, s in zip(rows, same, strict=True) if not s],
        }

    return {
        "prompts": len(rows),
        "max_tokens": max_tokens,
        "one_at_a_time": compare(one_by_one),
        "eight_at_a_time": compare(together),
    }


def eval_side_by_side(model: str, max_tokens: int, rounds: int) -> dict[str, Any]:
    rows = sample_rows()
    out: dict[str, Any] = {"max_tokens": max_tokens, "prompts": PROMPTS, "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.jsonl"
        with data.open("w") as fh:
            for k in range(PROMPTS):
                row = dict(rows[k % len(rows)])
                row["id"] = f"{row['id']}-{k}"
                if k >= len(rows):
                    row["prompt"] = f"{row['prompt']} (question {k})"
                fh.write(json.dumps(row) + "\n")
        path = Context().resolve(model).model
        config = {
            "models": {
                f"m-p{p}": {
                    "backend": "llamacpp",
                    "model": str(path),
                    "options": {"parallel": p, "n_ctx": 1024, "n_threads": THREADS},
                }
                for p in (1, 8)
            }
        }
        (Path(tmp) / "llmpick.yaml").write_text(json.dumps(config))
        walls: dict[int, list[float]] = {8: [], 1: []}
        for k in range(rounds):
            for p in (8, 1):  # batched first: any warm-up cost falls on it
                db = Path(tmp) / f"p{p}-{k}.db"  # a fresh store: nothing cached
                command = [
                    sys.executable, "-m", "llmpick", "eval", str(data), "-m", f"m-p{p}",
                    "--max-tokens", str(max_tokens), "--db", str(db), "--format", "json",
                    "--no-progress", "--concurrency", "8", "--scorer", "contains",
                ]  # fmt: skip
                started = time.perf_counter()
                done = subprocess.run(
                    command, cwd=tmp, capture_output=True, text=True, env=os.environ, check=False
                )
                walls[p].append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise SystemExit(f"llmpick eval failed: {done.stderr[-2000:]}")
                summary = json.loads(done.stdout)["models"][f"m-p{p}"]
                out.setdefault(f"parallel_{p}", {"scores": [], "errors": []})
                out[f"parallel_{p}"]["scores"].append(summary["mean"])
                out[f"parallel_{p}"]["errors"].append(summary["errors"])
        for p, values in walls.items():
            out[f"parallel_{p}"]["wall_s"] = values
            out[f"parallel_{p}"]["wall_s_median"] = statistics.median(values)
    out["speedup"] = out["parallel_1"]["wall_s_median"] / out["parallel_8"]["wall_s_median"]
    out["speedup_per_round"] = [
        a / b for a, b in zip(walls[1], walls[8], strict=True)
    ]  # fmt: skip
    return out


def anchors(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    backend = open_backend(args.model, 1)
    prompt_tokens = len(backend.prompt_tokens(request(0)))
    asyncio.run(backend.aclose())
    path = backend.path
    out: dict[str, Any] = {"prompt_tokens": prompt_tokens}
    points = result.get("throughput", {}).get("points", {})
    if args.batched_bench:
        bench = batching_anchor.batched_bench(
            args.batched_bench, path, prompt_tokens, TOKENS, STREAMS, THREADS, args.rounds
        )
        if points:
            bench["llmpick_ratio"] = {
                b: points[f"batched_{b}"]["decode_tokens_per_second"] / rate
                for b, rate in bench["decode_tokens_per_second"].items()
            }
        out["batched_bench"] = bench
    if args.server:
        bodies = [
            {**request(i).model_dump(include={"messages"}), "max_tokens": TOKENS,
             "temperature": 0, "ignore_eos": True}
            for i in range(8)
        ]  # fmt: skip
        srv = batching_anchor.server(args.server, path, bodies, THREADS, SLOT_CTX, args.rounds)
        if points:
            srv["llmpick_ratio"] = {
                n: points[f"batched_{n}"]["output_tokens_per_second"] / rate
                for n, rate in srv["output_tokens_per_second"].items()
            }
        out["server_parallel_8"] = srv
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a bundled model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eval-max-tokens", type=int, default=16)
    parser.add_argument("--batched-bench", type=Path, help="llama-batched-bench binary (anchor)")
    parser.add_argument("--server", type=Path, help="llama-server binary (anchor)")
    parser.add_argument(
        "--parts", default="throughput,agreement,eval", help="comma-separated parts to run"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "model": args.model,
        "threads": THREADS,
        "cpu_cores": os.cpu_count(),
        "tokens_per_stream": TOKENS,
        "rounds": args.rounds,
        "load_average_before": load_before,
    }
    if "throughput" in parts:
        result["throughput"] = throughput(args.model, args.rounds)
        report_throughput(result["throughput"])
    if args.batched_bench or args.server:
        result["anchors"] = anchors(args, result)
        report_anchors(result["anchors"])
    if "agreement" in parts:
        g = result["greedy_agreement"] = greedy_agreement(args.model, max_tokens=32)
        for how in ("one_at_a_time", "eight_at_a_time"):
            print(f"greedy agreement, {how}: {g[how]['identical']}/{g['prompts']} identical")
    if "eval" in parts:
        e = result["eval"] = eval_side_by_side(args.model, args.eval_max_tokens, args.rounds)
        print(
            f"eval {e['prompts']} prompts: parallel 1 {e['parallel_1']['wall_s_median']:.1f} s, "
            f"parallel 8 {e['parallel_8']['wall_s_median']:.1f} s (medians of {args.rounds}), "
            f"speedup {e['speedup']:.2f}x; scores {e['parallel_1']['scores']} vs "
            f"{e['parallel_8']['scores']}"
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
    out = RESULTS / f"batching_{args.model}_{'_'.join(sorted(parts))}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"load average before {load_before}, after {result['load_average_after']}")
    print(f"wrote {out}")


def report_throughput(t: dict[str, Any]) -> None:
    print(f"{'config':>16} {'decode tok/s':>12} {'range':>13} {'ratio':>6} {'TPOT ms':>8}")
    for name, p in t["points"].items():
        lo, hi = p["decode_tokens_per_second_range"]
        print(
            f"{name:>16} {p['decode_tokens_per_second']:12.1f} {lo:6.1f}-{hi:<6.1f} "
            f"{p['ratio_vs_single_path']:6.2f} {p['tpot_s_mean'] * 1000:8.1f}"
        )
    print(
        f"TTFT alone {t['ttft_alone_s'] * 1000:.0f} ms, "
        f"arriving while 7 decode {t['ttft_while_7_decode_s'] * 1000:.0f} ms"
    )


def report_anchors(a: dict[str, Any]) -> None:
    bench = a.get("batched_bench")
    if bench:
        for b, rate in bench["decode_tokens_per_second"].items():
            mine = bench.get("llmpick_ratio", {}).get(b)
            print(
                f"llama-batched-bench B={b:>2}: {rate:6.1f} tok/s ({bench['ratio_vs_1'][b]:.2f}x "
                f"its B=1)" + (f"; llmpick / llama.cpp {mine:.2f}" if mine else "")
            )
    srv = a.get("server_parallel_8")
    if srv:
        for n, rate in srv["output_tokens_per_second"].items():
            mine = srv.get("llmpick_ratio", {}).get(n)
            print(
                f"llama-server --parallel 8, {n} streams: {rate:6.1f} output tok/s"
                + (f"; llmpick / llama-server {mine:.2f}" if mine else "")
            )


if __name__ == "__main__":
    main()
