"""One strategy object per inference runtime: what each allocates and how it runs.

:data:`RUNTIMES` is the one list of runtime names (the CLI's ``--runtime``
choices, :class:`llmpick.recommend.Constraints`, calibration keys); each name
maps to a :class:`Runtime` that owns the runtime-specific rules ``fit_model``
needs: how the KV cache is allocated, the memory overhead beyond weights and
KV (formulas in :mod:`llmpick.fit.memory`), the memory budget it may use, the
per-step decode cost it adds, and the warnings it raises. ``fit_model`` only
asks ``get_runtime(name)``; it has no ``if runtime == ...`` branch.

To add a runtime: subclass :class:`Runtime`, add an instance to
``_BY_NAME``, and list it in the quantization table's ``runtimes``
(:mod:`llmpick.fit.quant`) for the formats it loads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from llmpick.errors import UsageError
from llmpick.fit.memory import (
    VLLM_GPU_MEMORY_UTILIZATION,
    LlamaCppSettings,
    Overhead,
    kv_cache_bytes,
    llamacpp_kv_cache_bytes,
    llamacpp_n_ctx,
    llamacpp_overhead,
    transformers_overhead,
    vllm_overhead,
)
from llmpick.fit.quant import kv_bytes_per_element
from llmpick.fit.speed import TRANSFORMERS_PER_LAYER_STEP_S

if TYPE_CHECKING:
    from llmpick.fit.shape import ModelShape
    from llmpick.hardware.devices import Device

__all__ = [
    "RUNTIMES",
    "LlamaCppRuntime",
    "Runtime",
    "TransformersRuntime",
    "VllmRuntime",
    "get_runtime",
    "runtime_for_backend",
]


class Runtime(ABC):
    """The memory and speed rules of one inference runtime."""

    #: the name used on the command line, in constraints and calibration keys
    name: ClassVar[str]
    #: the llmpick backend that runs models in this runtime here, if any
    backend: ClassVar[str | None] = None

    def warnings(self, device: Device, kv_dtype: str) -> list[str]:
        """Warnings about running on ``device`` with a ``kv_dtype`` cache."""
        return []

    def repack_bytes(self, shape: ModelShape, weights_from_file: bool) -> int:
        """Extra copies of the weights the runtime makes at load time."""
        return 0

    def kv_cache_bytes(self, shape: ModelShape, tokens: int, sequences: int, kv_dtype: str) -> int:
        """K and V bytes as this runtime allocates them for ``sequences`` of ``tokens``."""
        return kv_cache_bytes(shape, tokens, sequences, kv_dtype)

    def kv_cache_basis(
        self, shape: ModelShape, context: int, batch: int, kv_dtype: str
    ) -> tuple[int, str]:
        """(context the runtime allocates, how the KV cache figure was computed)."""
        swa = (
            f" {shape.sliding_layers} sliding-window layers count min(window, tokens)"
            if shape.sliding_layers
            else ""
        )
        basis = (
            f"2 x {shape.num_layers} layers x {shape.num_kv_heads} KV heads x "
            f"{shape.head_dim} head dim x {context} tokens x {batch} batch x "
            f"{kv_bytes_per_element(kv_dtype):g} bytes ({kv_dtype});{swa}"
        )
        return context, basis

    @abstractmethod
    def overhead(
        self,
        shape: ModelShape,
        *,
        context: int,
        batch: int,
        device: Device,
        weights: int,
        repack_bytes: int = 0,
    ) -> Overhead:
        """Memory beyond weights and KV cache (see :mod:`llmpick.fit.memory`)."""

    def budget_bytes(self, device: Device) -> int:
        """The memory the runtime may fill on ``device``."""
        return device.usable_memory_bytes

    def budget_basis(self, device: Device) -> str:
        """How :meth:`budget_bytes` was obtained."""
        return (
            f"usable memory {self.budget_bytes(device):,} bytes "
            f"({device.usable_memory_fraction:g} x memory)"
        )

    def outside_budget_bytes(self, overhead: Overhead) -> int:
        """Overhead that the runtime allocates outside its budget."""
        return 0

    def step_overhead(self, shape: ModelShape, device: Device) -> tuple[float, str]:
        """(fixed seconds every decode step adds, its basis); 0 for a compiled loop."""
        return 0.0, ""


class LlamaCppRuntime(Runtime):
    """llama.cpp (through llama-cpp-python): padded unified KV cache, CPU repack."""

    name = "llamacpp"
    backend = "llamacpp"

    def __init__(self, settings: LlamaCppSettings | None = None) -> None:
        self.settings = settings or LlamaCppSettings()

    def repack_bytes(self, shape: ModelShape, weights_from_file: bool) -> int:
        """Q4 tensors llama.cpp copies into its interleaved CPU layout (file weights only)."""
        return shape.cpu_repack_bytes if weights_from_file else 0

    def kv_cache_bytes(self, shape: ModelShape, tokens: int, sequences: int, kv_dtype: str) -> int:
        """The KV buffer llama.cpp allocates (context padded to 256 cells)."""
        return llamacpp_kv_cache_bytes(shape, tokens, sequences, kv_dtype, self.settings)

    def kv_cache_basis(
        self, shape: ModelShape, context: int, batch: int, kv_dtype: str
    ) -> tuple[int, str]:
        """(n_ctx llama.cpp allocates, the cells x layers x heads formula)."""
        n_ctx = llamacpp_n_ctx(context * batch)
        swa = (
            " sliding-window layers get the full context (llama.cpp's default swa_full=True);"
            if shape.sliding_layers
            else ""
        )
        basis = (
            f"as llama.cpp allocates: n_ctx {n_ctx} (context x batch padded to 256) cells x "
            f"{shape.num_layers} layers x {shape.num_kv_heads} KV heads x "
            f"({shape.head_dim} + {shape.v_head_dim}) head dims x "
            f"{kv_bytes_per_element(kv_dtype):g} bytes ({kv_dtype});{swa}"
        )
        return n_ctx, basis

    def overhead(
        self,
        shape: ModelShape,
        *,
        context: int,
        batch: int,
        device: Device,
        weights: int,
        repack_bytes: int = 0,
    ) -> Overhead:
        """Compute/output buffers, CPU repack, host process or CUDA context."""
        return llamacpp_overhead(shape, context, batch, device, repack_bytes, self.settings)


class VllmRuntime(Runtime):
    """vLLM: pre-allocates a share of the GPU; CUDA context sits outside it."""

    name = "vllm"

    def warnings(self, device: Device, kv_dtype: str) -> list[str]:
        """Warn unless the device is a CUDA/ROCm GPU (all vLLM runs on)."""
        if device.kind not in ("gpu", "generic"):
            return ["vLLM needs a CUDA/ROCm GPU; this device is not one"]
        return []

    def overhead(
        self,
        shape: ModelShape,
        *,
        context: int,
        batch: int,
        device: Device,
        weights: int,
        repack_bytes: int = 0,
    ) -> Overhead:
        """Profiled activation peak, CUDA graphs, CUDA context."""
        return vllm_overhead(shape)

    def budget_bytes(self, device: Device) -> int:
        """``gpu_memory_utilization`` x the device memory."""
        return int(device.memory_bytes * VLLM_GPU_MEMORY_UTILIZATION)

    def budget_basis(self, device: Device) -> str:
        """The utilization share of the whole memory."""
        return f"vLLM budget: {VLLM_GPU_MEMORY_UTILIZATION} x {device.memory_bytes:,} bytes"

    def outside_budget_bytes(self, overhead: Overhead) -> int:
        """The CUDA context is not part of ``gpu_memory_utilization``."""
        return overhead.parts.get("cuda_context", 0)


class TransformersRuntime(Runtime):
    """Hugging Face transformers: model-dtype KV cache, eager decode steps."""

    name = "transformers"
    backend = "hf"

    def warnings(self, device: Device, kv_dtype: str) -> list[str]:
        """Warn that transformers keeps K/V in the model dtype."""
        if kv_dtype not in ("f16", "bf16", "fp16"):
            return [f"transformers caches K/V in the model dtype, not {kv_dtype}"]
        return []

    def overhead(
        self,
        shape: ModelShape,
        *,
        context: int,
        batch: int,
        device: Device,
        weights: int,
        repack_bytes: int = 0,
    ) -> Overhead:
        """Prefill activations, allocator slack, CUDA context or Python + torch."""
        return transformers_overhead(shape, context, batch, device, weights)

    def step_overhead(self, shape: ModelShape, device: Device) -> tuple[float, str]:
        """Eager per-layer step cost on a GPU (see :mod:`llmpick.fit.speed`)."""
        basis = (
            f"transformers eager step: {shape.num_layers} layers x "
            f"{TRANSFORMERS_PER_LAYER_STEP_S * 1e3:g} ms, measured on an H200"
        )
        seconds = shape.num_layers * TRANSFORMERS_PER_LAYER_STEP_S if device.kind == "gpu" else 0.0
        return seconds, basis


_BY_NAME: dict[str, type[Runtime]] = {
    cls.name: cls for cls in (LlamaCppRuntime, VllmRuntime, TransformersRuntime)
}
#: the runtime names, in the order the CLI lists them (the default first)
RUNTIMES: tuple[str, ...] = tuple(_BY_NAME)


def get_runtime(name: str) -> Runtime:
    """A fresh strategy object for runtime ``name``; UsageError names the known ones."""
    cls = _BY_NAME.get(name)
    if cls is None:
        raise UsageError(f"unknown runtime {name!r}", "use one of: " + ", ".join(RUNTIMES))
    return cls()


def runtime_for_backend(backend: str) -> str:
    """The runtime an llmpick backend runs its models in (llama.cpp for anything else)."""
    for name, cls in _BY_NAME.items():
        if cls.backend == backend:
            return name
    return LlamaCppRuntime.name
