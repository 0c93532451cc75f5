"""TPOT reported by ``llmpick bench`` vs the same quantity measured with raw llama-cpp-python.

Both sides load the bundled SmolLM2 GGUF with the same n_ctx and threads, send
the same prompts (text of exactly ``--prompt-tokens`` tokens, wrapped in the
model's chat template), ask for ``--max-tokens`` tokens with end-of-sequence
left on (greedy decoding, so both emit the same tokens), and compute
TPOT = (E2E - TTFT) / (N - 1) per request; medians are compared. The raw
side is ``Llama.create_completion(stream=True)`` timed here with
``time.perf_counter`` and no llmpick code in the loop. The two sides alternate in
short rounds, each in a fresh process, so drifts in machine load hit both
alike; the median of the per-round ratios is the result.

Run:  python benchmarks/bench_tpot_vs_raw.py [--rounds 6] [--requests 2]
Target: ratio llmpick / raw within 0.90-1.10.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from llama_cpp import Llama

from llmpick.backends.base import GenerationRequest
from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.backends.llamacpp import LlamaCppBackend
from llmpick.bench import BenchConfig, run_bench
from llmpick.bench.metrics import time_per_output_token_s
from llmpick.bench.prompts import synthetic_prompt, token_counter_for
from llmpick.config import default_cache_dir
from llmpick.context import Context


def raw_tpots(llm: Llama, prompts: list[str], max_tokens: int) -> list[float]:
    """TPOT per request measured directly on a llama-cpp-python stream."""
    values = []
    for prompt in prompts:
        start = time.perf_counter()
        first = end = None
        n = 0
        for chunk in llm.create_completion(
            prompt, max_tokens=max_tokens, temperature=0.0, stream=True
        ):
            end = time.perf_counter()
            choice = chunk["choices"][0]
            if choice["finish_reason"] is not None and not choice["text"]:
                continue  # the closing chunk carries no token
            first = first if first is not None else end
            n += 1
        if first is None or end is None or n < 2:
            continue
        e2e, ttft = end - start, first - start
        values.append((e2e - ttft) / (n - 1))
    return values


def raw_round(
    gguf: str, n_ctx: int, threads: int, prompts: list[str], max_tokens: int
) -> list[float]:
    """One round of the raw side, in its own process: load, warm up, measure."""
    llm = Llama(model_path=gguf, n_ctx=n_ctx, n_threads=threads, verbose=False)
    raw_tpots(llm, prompts[-1:], max_tokens)  # warm-up, like llmpick's --warmup 1
    return raw_tpots(llm, prompts, max_tokens)


def llmpick_round(n_ctx: int, threads: int, dataset: str, max_tokens: int) -> list[float]:
    """One round of ``run_bench`` on the same prompts, in its own process."""
    context = Context()
    spec = context.resolve("smollm2-135m-instruct")
    spec = spec.model_copy(update={"options": {"n_ctx": n_ctx, "n_threads": threads}})
    prompts = Path(dataset).read_text(encoding="utf-8").splitlines()
    config = BenchConfig(
        concurrency=(1,),
        max_tokens=max_tokens,
        requests=len(prompts),
        warmup=1,
        dataset=Path(dataset),
        # greedy decoding of the same prompt: both sides emit the same tokens
        ignore_eos=False,
    )
    result = run_bench(context, spec, config)
    return [v for t in result.results[0].timings if (v := time_per_output_token_s(t)) is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=2, help="per side per round")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    gguf = BUNDLED_MODELS["smollm2-135m-instruct"].locate(default_cache_dir())
    # the same prompt texts on both sides, rendered with the model's chat template
    helper = LlamaCppBackend(str(gguf), LlamaCppBackend.Options(n_ctx=args.n_ctx))
    counter = token_counter_for(helper)
    total = args.rounds * args.requests
    texts = [synthetic_prompt(counter, args.prompt_tokens, seed=i) for i in range(total)]
    rendered = [helper.render_prompt(GenerationRequest.from_prompt(t))[0] for t in texts]
    asyncio.run(helper.aclose())
    del helper

    workdir = tempfile.mkdtemp(prefix="llmpick-bench-")
    spawn = multiprocessing.get_context("spawn")
    ours: list[float] = []
    theirs: list[float] = []
    ratios: list[float] = []
    for r in range(args.rounds):
        batch = slice(r * args.requests, (r + 1) * args.requests)
        dataset = Path(workdir) / f"round{r}.txt"
        dataset.write_text("\n".join(texts[batch]) + "\n", encoding="utf-8")
        # a fresh process per side and round: llama.cpp's worker threads from one
        # side never compete with the other's
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            raw_values = pool.submit(
                raw_round, str(gguf), args.n_ctx, args.threads, rendered[batch], args.max_tokens
            ).result()
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            our_values = pool.submit(
                llmpick_round, args.n_ctx, args.threads, str(dataset), args.max_tokens
            ).result()
        ours += our_values
        theirs += raw_values
        ratios.append(statistics.median(our_values) / statistics.median(raw_values))
        print(
            f"round {r + 1}: median TPOT llmpick {statistics.median(our_values) * 1000:.2f} ms,"
            f" raw {statistics.median(raw_values) * 1000:.2f} ms, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    ratio = statistics.median(ratios)
    print(
        f"TPOT (measured; medians of {len(ours)} / {len(theirs)} requests): "
        f"llmpick {statistics.median(ours) * 1000:.2f} ms, "
        f"raw llama-cpp-python {statistics.median(theirs) * 1000:.2f} ms; "
        f"median per-round ratio llmpick/raw {ratio:.3f} "
        f"({'within' if 0.9 <= ratio <= 1.1 else 'OUTSIDE'} 10%)"
    )


if __name__ == "__main__":
    main()
