"""TPOT reported by ``llmpick bench`` vs the same quantity measured with raw llama-cpp-python.

Both sides load the bundled SmolLM2 GGUF with the same n_ctx and threads, send
the same prompts (text of exactly ``--prompt-tokens`` tokens, wrapped in the
model's chat template), ask for ``--max-tokens`` tokens with end-of-sequence
left on (greedy decoding, so both emit the same tokens), and compute
TPOT = (E2E - TTFT) / (N - 1) per request; medians are compared. The raw
side is ``Llama.create_completion(stream=True)`` timed here with
``time.perf_counter`` and no llmpick code in the loop. The two sides alternate in
short rounds so drifts in machine load hit both alike; the per-round ratios'
median is the result.

Run:  python benchmarks/bench_tpot_vs_raw.py [--rounds 5] [--requests 2]
Target: ratio llmpick / raw within 0.90-1.10.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=2, help="per side per round")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    context = Context()
    spec = context.resolve("smollm2-135m-instruct")
    spec = spec.model_copy(update={"options": {"n_ctx": args.n_ctx, "n_threads": args.threads}})
    gguf = BUNDLED_MODELS["smollm2-135m-instruct"].locate(default_cache_dir())

    # the same prompt texts on both sides, rendered with the model's chat template
    helper = LlamaCppBackend(str(gguf), LlamaCppBackend.Options(n_ctx=args.n_ctx))
    counter = token_counter_for(helper)
    total = args.rounds * args.requests
    texts = [synthetic_prompt(counter, args.prompt_tokens, seed=i) for i in range(total)]
    rendered = [helper.render_prompt(GenerationRequest.from_prompt(t))[0] for t in texts]
    asyncio.run(helper.aclose())

    raw = Llama(model_path=str(gguf), n_ctx=args.n_ctx, n_threads=args.threads, verbose=False)
    raw_tpots(raw, rendered[:1], args.max_tokens)  # warm-up
    workdir = tempfile.mkdtemp(prefix="llmpick-bench-")
    ours: list[float] = []
    theirs: list[float] = []
    ratios: list[float] = []
    for r in range(args.rounds):
        batch = slice(r * args.requests, (r + 1) * args.requests)
        raw_round = raw_tpots(raw, rendered[batch], args.max_tokens)
        # the same texts, one per line, as a dataset (the warm-up takes the last one)
        dataset = Path(workdir) / f"round{r}.txt"
        dataset.write_text("\n".join(texts[batch]) + "\n", encoding="utf-8")
        config = BenchConfig(
            concurrency=(1,),
            max_tokens=args.max_tokens,
            requests=args.requests,
            warmup=1,
            dataset=dataset,
            # greedy decoding of the same prompt: both sides emit the same tokens
            ignore_eos=False,
        )
        result = run_bench(context, spec, config)
        ours_round = [
            v for t in result.results[0].timings if (v := time_per_output_token_s(t)) is not None
        ]
        ours += ours_round
        theirs += raw_round
        ratios.append(statistics.median(ours_round) / statistics.median(raw_round))
        print(
            f"round {r + 1}: median TPOT llmpick {statistics.median(ours_round) * 1000:.2f} ms,"
            f" raw {statistics.median(raw_round) * 1000:.2f} ms, ratio {ratios[-1]:.3f}",
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
