"""Continuous batching in the llamacpp backend, on the bundled SmolLM2 (real llama.cpp)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from llmpick.backends.base import Generation, GenerationRequest, collect, collect_stream
from llmpick.backends.llamacpp import LlamaCppBackend, LlamaCppOptions, default_parallel
from llmpick.backends.llamacpp_batch import common_prefix
from llmpick.context import Context
from llmpick.errors import ContextLengthError
from llmpick.fit.memory import llamacpp_kv_cache_bytes
from llmpick.fit.shape import shape_from_gguf

pytestmark = pytest.mark.slow

SMOL = "smollm2-135m-instruct"
SLOTS = 4
SLOT_CTX = 256


def _open(parallel: int) -> LlamaCppBackend:
    context = Context()
    spec = context.resolve(SMOL)
    options = {**spec.options, "parallel": parallel, "n_ctx": SLOT_CTX, "n_threads": 2}
    backend = context.open_backend(spec.model_copy(update={"options": options}))
    assert isinstance(backend, LlamaCppBackend)
    return backend


@pytest.fixture(scope="module")
def batched() -> Iterator[LlamaCppBackend]:
    backend = _open(SLOTS)
    yield backend
    asyncio.run(backend.aclose())


@pytest.fixture(scope="module")
def single() -> Iterator[LlamaCppBackend]:
    backend = _open(1)
    yield backend
    asyncio.run(backend.aclose())


def _requests() -> list[GenerationRequest]:
    return [
        GenerationRequest.from_prompt("Count from 1 to 20.", temperature=0, max_tokens=24),
        GenerationRequest.from_prompt(
            "Count from 1 to 20.", temperature=0, max_tokens=24, stop=("5",)
        ),
        GenerationRequest.from_prompt(
            "Write a short poem about the sea.", temperature=0.9, top_p=0.9, seed=7, max_tokens=12
        ),
        # a prompt whose greedy tokens are clear winners: batched kernels round differently,
        # which can flip a near tie (a "Say hi." reply started "Hello" alone, "I'm" batched)
        GenerationRequest.from_prompt(
            "Count from 21 to 40.", temperature=0, max_tokens=9, ignore_eos=True
        ),
        GenerationRequest.from_prompt("What is 2+2?", temperature=0, max_tokens=6),
    ]


def test_interleaved_requests_get_their_own_outputs(
    batched: LlamaCppBackend, single: LlamaCppBackend
) -> None:
    requests = _requests()

    async def run() -> tuple[list[Generation], list[Generation]]:
        alone = [await collect(single, r) for r in requests]
        # five requests on four slots: one joins while the others decode
        together = await asyncio.gather(*(collect(batched, r) for r in requests))
        return alone, list(together)

    alone, together = asyncio.run(run())
    for request, a, b in zip(requests, alone, together, strict=True):
        if request.params.temperature > 0:
            # a seeded draw follows logits that batching may change in the last bits
            assert b.output and b.usage.completion_tokens <= request.params.max_tokens
            continue
        assert b.output == a.output, request.params
        assert b.usage.completion_tokens == a.usage.completion_tokens
        assert b.finish_reason == a.finish_reason
    assert together[0].output.startswith("1")
    assert "5" not in together[1].output and together[1].finish_reason == "stop"
    assert together[0].output.startswith(together[1].output)
    assert together[3].usage.completion_tokens == 9  # ignore_eos: exactly max_tokens
    assert all(b.chunk_times_s == sorted(b.chunk_times_s) for b in together)
    assert batched.batch_stats()["slots_in_use"] == 0


def test_cancelled_stream_frees_its_slot_others_unchanged(batched: LlamaCppBackend) -> None:
    keep = GenerationRequest.from_prompt("Count from 1 to 20.", temperature=0, max_tokens=20)

    async def run() -> tuple[Generation, list[Generation], dict[str, int]]:
        alone = await collect(batched, keep)
        others = [asyncio.ensure_future(collect(batched, keep)) for _ in range(2)]
        doomed = batched.generate(
            GenerationRequest.from_prompt("Tell a long story.", temperature=0, max_tokens=200)
        )
        await anext(doomed)  # the client reads one token, then goes away
        await doomed.aclose()
        during = batched.batch_stats()
        return alone, list(await asyncio.gather(*others)), during

    alone, others, during = asyncio.run(run())
    assert during["slots_in_use"] <= 3
    assert [g.output for g in others] == [alone.output] * 2
    stats = batched.batch_stats()
    assert (stats["slots_in_use"], stats["kv_cells_used"]) == (0, 0)


def test_prompt_longer_than_a_slot_fails_alone(batched: LlamaCppBackend) -> None:
    fine = GenerationRequest.from_prompt("Name a colour.", temperature=0, max_tokens=8)
    too_long = GenerationRequest.from_prompt("word " * (SLOT_CTX + 10), max_tokens=8)

    async def run() -> list[Any]:
        return list(
            await asyncio.gather(
                collect(batched, fine), collect(batched, too_long), return_exceptions=True
            )
        )

    ok, failed = asyncio.run(run())
    assert isinstance(failed, ContextLengthError) and "per slot" in (failed.hint or "")
    assert isinstance(ok, Generation) and ok.output
    assert batched.context_length() == SLOT_CTX


def test_thousand_requests_leak_no_kv_and_no_memory(batched: LlamaCppBackend) -> None:
    request = GenerationRequest.from_prompt("Hi", temperature=0, max_tokens=1)

    async def wave(n: int) -> None:
        limit = asyncio.Semaphore(SLOTS * 2)

        async def one() -> None:
            async with limit:
                generation = await collect(batched, request)
                assert generation.usage.completion_tokens >= 1

        await asyncio.gather(*(one() for _ in range(n)))

    process = psutil.Process()
    asyncio.run(wave(100))  # warm up: buffers and allocator pools reach their size
    rss_before = process.memory_info().rss
    asyncio.run(wave(900))
    grown = process.memory_info().rss - rss_before
    stats = batched.batch_stats()
    assert (stats["slots_in_use"], stats["kv_cells_used"]) == (0, 0)
    # free slots keep their last prompt for reuse: at most a slot's context each
    assert stats["kv_cells_cached"] <= SLOTS * SLOT_CTX
    assert grown < 16 * 1024**2, f"RSS grew by {grown / 1024**2:.1f} MiB over 900 requests"


def test_shared_prompt_prefix_is_read_once_and_outputs_stay_exact(
    batched: LlamaCppBackend, single: LlamaCppBackend
) -> None:
    # the template's default system message is the shared prefix; prompts whose greedy
    # tokens win by over 1 logit in the first 12 (a near tie may flip when the cached part
    # was computed in another batch, with or without reuse: docs/batching.md measures it)
    asks = [
        "Say the days of the week in order.",
        "List the numbers from 1 to 10, separated by commas.",
    ]
    requests = [GenerationRequest.from_prompt(q, temperature=0, max_tokens=12) for q in asks]
    tokens = [batched.prompt_tokens(r) for r in requests]
    prefix = common_prefix(tokens[0], tokens[1])
    assert prefix > 20  # the template and its system message

    async def run() -> tuple[list[Generation], list[Generation], list[int]]:
        alone = [await collect(single, r) for r in requests]
        outputs, reused = [], []
        for r in requests:  # one at a time: the second finds the first's cells
            before = batched.batch_stats()["tokens_reused"]
            outputs.append(await collect(batched, r))
            reused.append(batched.batch_stats()["tokens_reused"] - before)
        # the second again, twice at once: one takes the slot that holds it, the other
        # shares that slot's cells (llama_memory_seq_cp)
        before = batched.batch_stats()["tokens_reused"]
        outputs += await asyncio.gather(*(collect(batched, requests[1]) for _ in range(2)))
        reused.append(batched.batch_stats()["tokens_reused"] - before)
        return alone, outputs, reused

    alone, outputs, reused = asyncio.run(run())
    assert [g.output for g in outputs] == [alone[0].output] + [alone[1].output] * 3
    assert reused[1] >= prefix
    assert reused[2] == 2 * (len(tokens[1]) - 1)  # all but the last token, which is read again
    assert all(g.usage.prompt_tokens == len(tokens[1]) for g in outputs[1:])


def test_pool_sends_concurrent_requests_to_a_batching_model(tmp_path: Path) -> None:
    context = Context()
    spec = context.resolve(SMOL)
    options = {**spec.options, "parallel": 3, "n_ctx": SLOT_CTX}
    request = GenerationRequest.from_prompt("Count to ten.", temperature=0, max_tokens=16)

    async def run() -> tuple[int, int]:
        async with context.pool() as pool:
            model = await pool.open(spec.model_copy(update={"options": options}))
            streams = [model.stream(request) for _ in range(3)]
            for stream in streams:
                await anext(stream)  # all three have a first token: decoding together
            in_flight = model.in_flight
            slots = model.backend.batch_stats()["slots_in_use"]  # type: ignore[attr-defined]
            for stream in streams:
                async with contextlib.aclosing(stream):
                    await collect_stream(stream)
            return in_flight, slots

    assert asyncio.run(run()) == (3, 3)


def test_kv_cache_is_what_fit_estimates(batched: LlamaCppBackend) -> None:
    # "llama_kv_cache: size =   22.50 MiB (   256 cells,  30 layers,  4/4 seqs)"
    found = re.search(r"llama_kv_cache: size =\s*([\d.]+) MiB", batched.load_log)
    assert found is not None, "llama.cpp logged no KV size"
    logged = float(found.group(1))
    estimate = llamacpp_kv_cache_bytes(shape_from_gguf(batched.path), SLOT_CTX, SLOTS)
    assert round(estimate / 1024**2, 2) == logged


def test_default_parallel_is_eight_memory_allowing() -> None:
    cpu = LlamaCppOptions()
    assert default_parallel(cpu, 1, available_bytes=2**40) == 8
    assert default_parallel(LlamaCppOptions(n_gpu_layers=-1), 1, 2**40) == 8
    # eight slots of 1 GiB KV do not fit in a quarter of 12 GiB: three do
    assert default_parallel(cpu, 2**30, available_bytes=12 * 2**30) == 3
    assert default_parallel(cpu, 2**40, available_bytes=2**30) == 1
