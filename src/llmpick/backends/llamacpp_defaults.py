"""Defaults the llamacpp backend picks for the machine: threads and batching slots."""

from __future__ import annotations

import os
from pathlib import Path

from llmpick.backends.llamacpp_options import LlamaCppOptions
from llmpick.errors import LlmpickError

__all__ = ["default_parallel", "default_threads", "kv_bytes_per_slot"]


def default_threads() -> tuple[int, int]:
    """Threads for one-token steps and for prompt batches when ``n_threads`` is not set.

    A decode step is limited by memory bandwidth and by the arithmetic of one core per
    thread; hyper-threads share a core's units and slow each other down, so steps use one
    thread per physical core the process may run on. Prompt batches are compute-bound
    matrix products and use every allowed logical core, as llama-cpp-python does.
    """
    import psutil

    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        allowed = os.cpu_count() or 1
    logical = psutil.cpu_count(logical=True) or allowed
    physical = psutil.cpu_count(logical=False) or logical
    # with SMT, the allowed logical cores cover allowed * physical / logical cores
    steps = max(1, min(allowed, round(allowed * physical / logical)))
    return steps, max(1, allowed)


def default_parallel(
    options: LlamaCppOptions,
    kv_bytes_per_slot: int,
    available_bytes: int | None = None,
) -> int:
    """Slots when ``parallel`` is not set: 8, fewer if their KV cache would not fit.

    One decode step reads every weight once whatever the batch, so several sequences turn
    matrix-vector work into matrix-matrix work for much less than their number of steps.
    Measured on 2 CPU cores (docs/batching.md), aggregate decode keeps rising up to 16
    streams (SmolLM2 1.55x at 4, 1.78x at 8, 1.96x at 16; Gemma 3 270M 1.54x, 2.04x,
    2.61x) while each stream's TPOT grows (57 ms at 8 for SmolLM2, 85 ms for Gemma: still
    faster than people read); 8 is the knee, and what llama.cpp's server users
    commonly pick. On a GPU batches of 8 are close to free. The KV cache of all slots is
    kept under a quarter of the available memory.
    """
    wanted = 8
    if available_bytes is None:
        import psutil

        available_bytes = int(psutil.virtual_memory().available)
    while wanted > 1 and wanted * kv_bytes_per_slot > available_bytes // 4:
        wanted -= 1
    return max(1, wanted)


def kv_bytes_per_slot(path: Path, options: LlamaCppOptions) -> int:
    """KV bytes of one slot of ``n_ctx`` tokens, by fit's rule (0 if the shape is unknown)."""
    from llmpick.fit.memory import LlamaCppSettings, llamacpp_kv_cache_bytes
    from llmpick.fit.shape import shape_from_gguf

    try:
        shape = shape_from_gguf(path)
    except LlmpickError:
        return 0
    settings = LlamaCppSettings(n_batch=options.n_batch, swa_full=options.swa_full)
    return llamacpp_kv_cache_bytes(shape, options.n_ctx, 1, settings=settings)
