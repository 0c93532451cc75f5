"""llmpick's llamacpp backend vs raw llama-cpp-python: decode tokens/s, side by side.

Both load the bundled SmolLM2-135M-Instruct GGUF with the same n_ctx and
threads, answer the same chat prompt greedily, and produce 128 output tokens.
Decode tokens/s = (tokens - 1) / (time of last token - time of first token).
Runs alternate (raw, llmpick, raw, …) so drift hits both; the median of each
is compared. Target: llmpick >= 95% of raw.

    python benchmarks/llamacpp_overhead.py [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from llama_cpp import Llama

from llmpick.backends.base import GenerationRequest, collect
from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.backends.llamacpp import LlamaCppBackend, LlamaCppOptions
from llmpick.config import default_cache_dir

PROMPT = "Count from 1 to 300, separated by commas."
N_TOKENS = 128


def raw_decode_tps(llm: Llama) -> tuple[float, int]:
    stamps: list[float] = []
    for _chunk in llm.create_chat_completion(
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=N_TOKENS,
        temperature=0.0,
        stream=True,
    ):
        stamps.append(time.perf_counter())
    # The first streamed chunk is the role header; content chunks follow, one per token.
    tokens = stamps[1:-1]
    return (len(tokens) - 1) / (tokens[-1] - tokens[0]), len(tokens)


def llmpick_decode_tps(backend: LlamaCppBackend) -> tuple[float, int]:
    req = GenerationRequest.from_prompt(PROMPT, temperature=0.0, max_tokens=N_TOKENS)
    gen = asyncio.run(collect(backend, req))
    rate = gen.output_tokens_per_second
    assert rate is not None
    return rate, gen.usage.completion_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    path = BUNDLED_MODELS["smollm2-135m-instruct"].locate(default_cache_dir())
    raw = Llama(model_path=str(path), n_ctx=4096, n_threads=args.threads, verbose=False)
    ours = LlamaCppBackend(str(path), LlamaCppOptions(n_ctx=4096, n_threads=args.threads))
    raw_decode_tps(raw), llmpick_decode_tps(ours)  # warm-up
    raw_rates, our_rates = [], []
    for i in range(args.repeats):
        r, n_raw = raw_decode_tps(raw)
        o, n_ours = llmpick_decode_tps(ours)
        raw_rates.append(r)
        our_rates.append(o)
        print(
            f"run {i + 1}: raw {r:7.1f} tok/s ({n_raw} tokens)   "
            f"llmpick {o:7.1f} tok/s ({n_ours} tokens)"
        )
    raw_med, our_med = statistics.median(raw_rates), statistics.median(our_rates)
    ratio = our_med / raw_med
    print(f"median decode tokens/s: raw llama-cpp-python {raw_med:.1f}, llmpick {our_med:.1f}")
    print(
        f"ratio llmpick/raw = {ratio:.3f}  (target >= 0.95: {'PASS' if ratio >= 0.95 else 'FAIL'})"
    )


if __name__ == "__main__":
    main()
