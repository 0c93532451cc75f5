"""Defaults the llamacpp backend picks for the machine: threads and batching slots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from llmpick.errors import LlmpickError

if TYPE_CHECKING:
    from llmpick.backends.llamacpp import LlamaCppOptions

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
    cores: int | None = None,
    available_bytes: int | None = None,
) -> int:
    """Slots when ``parallel`` is not set: 2 per core (8 on a GPU), at most 8, memory allowing.

    On a CPU one decode step reads every weight once whatever the batch, so a
    few sequences per core turn matrix-vector work into matrix-matrix work for
    little extra time (docs/batching.md has the measured curve); beyond ~8 the
    step becomes compute-bound and each stream slows down as much as the batch
    grows. The KV cache of all slots is kept under a quarter of the available
    memory.
    """
    wanted = 8 if options.n_gpu_layers != 0 else min(8, 2 * (cores or os.cpu_count() or 1))
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
