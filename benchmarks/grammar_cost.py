"""The cost of constrained decoding: llama.cpp decode tokens/s with and without a grammar.

One bundled SmolLM2-135M-Instruct backend answers the same 10 prompts three ways,
greedily, up to 64 tokens: plain text, ``response_format`` json_schema (the schema's
grammar) and ``tools`` with ``tool_choice: required`` (the tool-call grammar over
two functions). Rounds rotate the order of the three sides. Reported per side: decode
tokens/s (tokens after the first over the time after the first) and time to the first
token, medians with ranges, and the ratios to plain measured in the same run.
Time to first token includes building the grammar sampler and evaluating the prompt:
the tools side's prompt is longer (the tool list is in it; its prompt tokens are
printed), and a side that follows another on the same prompt may reuse its cached
prefix, so read TTFT as indicative; decode tokens/s is the grammar's cost.

    python benchmarks/grammar_cost.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from llmpick.backends.base import GenerationRequest, collect
from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.backends.llamacpp import LlamaCppBackend, LlamaCppOptions
from llmpick.config import default_cache_dir

PROMPTS = [
    "Describe Paris in one sentence.",
    "Give me a user profile for a software engineer named Ana.",
    "What's the weather like in Tokyo today?",
    "Book a table for two at an Italian restaurant tonight.",
    "Summarise the plot of Hamlet.",
    "List three facts about the Moon.",
    "Convert 100 US dollars to euros.",
    "Who painted the Mona Lisa?",
    "Plan a weekend trip to Berlin.",
    "Explain what a hash map is.",
]
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "points": {"type": "array", "items": {"type": "string"}},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["title", "points", "rating"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["query"],
            },
        },
    },
]
SIDES: dict[str, dict[str, Any]] = {
    "plain": {},
    "json_schema": {
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}
    },
    "tools": {"tools": TOOLS, "tool_choice": "required"},
}


def request(prompt: str, side: str) -> GenerationRequest:
    return GenerationRequest.model_validate(
        {
            "messages": [{"role": "user", "content": prompt}],
            "params": {"temperature": 0.0, "max_tokens": 64},
            **SIDES[side],
        }
    )


def one(backend: LlamaCppBackend, prompt: str, side: str) -> tuple[float | None, float | None, int]:
    gen = asyncio.run(collect(backend, request(prompt, side)))
    rate = gen.output_tokens_per_second if gen.usage.completion_tokens >= 8 else None
    return rate, gen.time_to_first_token_s, gen.usage.prompt_tokens


def _fmt(values: list[float], unit: str, scale: float = 1.0) -> str:
    mid = statistics.median(values) * scale
    return f"{mid:7.1f} {unit} (range {min(values) * scale:.1f}-{max(values) * scale:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    path = BUNDLED_MODELS["smollm2-135m-instruct"].locate(default_cache_dir())
    backend = LlamaCppBackend(str(path), LlamaCppOptions(n_ctx=2048))
    print(backend.describe().model_dump_json(exclude_none=True))
    sides = list(SIDES)
    rates: dict[str, list[float]] = {s: [] for s in sides}
    ttft: dict[str, list[float]] = {s: [] for s in sides}
    prompt_tokens: dict[str, list[int]] = {s: [] for s in sides}
    one(backend, PROMPTS[0], "plain")  # warm-up
    for r in range(args.rounds):
        order = sides[r % 3 :] + sides[: r % 3]
        for prompt in PROMPTS:
            for side in order:
                rate, first, n_prompt = one(backend, prompt, side)
                prompt_tokens[side].append(n_prompt)
                if rate is not None:
                    rates[side].append(rate)
                if first is not None:
                    ttft[side].append(first)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    base_rate = statistics.median(rates["plain"])
    base_ttft = statistics.median(ttft["plain"])
    for side in sides:
        rate_ratio = statistics.median(rates[side]) / base_rate
        ttft_added = (statistics.median(ttft[side]) - base_ttft) * 1000
        print(
            f"{side:12s} decode {_fmt(rates[side], 'tok/s')}  x{rate_ratio:.2f} of plain  "
            f"TTFT {_fmt(ttft[side], 'ms', 1000)}  {ttft_added:+.1f} ms  "
            f"prompt {statistics.median(prompt_tokens[side]):.0f} tok  (n={len(rates[side])})"
        )
    asyncio.run(backend.aclose())


if __name__ == "__main__":
    main()
