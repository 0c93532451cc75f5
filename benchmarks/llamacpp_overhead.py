"""llmpick's llamacpp backend vs raw llama-cpp-python: decode tokens/s, side by side.

Three sides load the bundled SmolLM2-135M-Instruct GGUF with the same n_ctx, answer the
same chat prompt greedily and produce 128 output tokens: llmpick with its default threads
(one per allowed physical core, ``default_threads``), raw llama-cpp-python with that same
thread count, and raw llama-cpp-python with its own default (half the cores per step).
Decode tokens/s = (tokens - 1) / (time of last token - time of first token). Rounds rotate
the order so drift hits every side; per-round ratios and their median are reported.
Targets: llmpick >= 0.97x raw at the same threads; llmpick's default >= llama-cpp-python's.

    python benchmarks/llamacpp_overhead.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from llama_cpp import Llama

from llmpick.backends.base import GenerationRequest, collect
from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.backends.llamacpp import LlamaCppBackend, LlamaCppOptions
from llmpick.backends.llamacpp_defaults import default_threads
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


def _summary(name: str, rates: list[float]) -> str:
    middle = statistics.median(rates)
    return f"{name} median {middle:6.1f} tok/s (range {min(rates):.1f}-{max(rates):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    path = BUNDLED_MODELS["smollm2-135m-instruct"].locate(default_cache_dir())
    steps, batches = default_threads()
    ours = LlamaCppBackend(str(path), LlamaCppOptions(n_ctx=4096))  # llmpick's default threads
    assert ours.n_threads == steps
    same = Llama(model_path=str(path), n_ctx=4096, n_threads=steps, verbose=False)
    default = Llama(model_path=str(path), n_ctx=4096, verbose=False)  # llama-cpp-python's default
    print(
        f"threads per step: llmpick default {steps} (prompt batches {batches}); "
        f"llama-cpp-python default {default.n_threads} (batches {default.n_threads_batch})"
    )
    sides: dict[str, Callable[[], tuple[float, int]]] = {
        "llmpick": lambda: llmpick_decode_tps(ours),
        f"raw n_threads={steps}": lambda: raw_decode_tps(same),
        "raw default": lambda: raw_decode_tps(default),
    }
    for measure in sides.values():
        measure()  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in sides}
    same_ratio: list[float] = []
    default_ratio: list[float] = []
    names = list(sides)
    for i in range(args.repeats):
        order = names[i % 3 :] + names[: i % 3]  # rotate so no side always goes first
        got = {name: sides[name]()[0] for name in order}
        for name, rate in got.items():
            rates[name].append(rate)
        same_ratio.append(got["llmpick"] / got[f"raw n_threads={steps}"])
        default_ratio.append(got["llmpick"] / got["raw default"])
        print(f"round {i + 1}: " + "   ".join(f"{n} {got[n]:6.1f}" for n in names))
    for name in names:
        print(_summary(name, rates[name]))
    ratio = statistics.median(same_ratio)
    vs_default = statistics.median(default_ratio)
    print(
        f"llmpick / raw at the same threads = {ratio:.3f} per-round median "
        f"(range {min(same_ratio):.3f}-{max(same_ratio):.3f}; target >= 0.97: "
        f"{'PASS' if ratio >= 0.97 else 'FAIL'})"
    )
    print(
        f"llmpick default threads / llama-cpp-python default = {vs_default:.3f} "
        f"(range {min(default_ratio):.3f}-{max(default_ratio):.3f}; target >= 1.0: "
        f"{'PASS' if vs_default >= 1.0 else 'FAIL'})"
    )


if __name__ == "__main__":
    main()
