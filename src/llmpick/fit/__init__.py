"""Fit: memory (weights, KV cache, runtime overhead) and speed (roofline) estimates.

    from llmpick.fit import fit_model
    r = fit_model("Qwen/Qwen2.5-7B-Instruct", quant="Q4_K_M", context=32768, device="rtx4090")
    r.kv_cache_bytes, r.total_bytes, r.fits, r.decode_tokens_per_second, r.basis

The formulas are documented in :mod:`llmpick.fit.memory` (memory, per runtime),
:mod:`llmpick.fit.runtimes` (one strategy object per runtime, and the list of
runtimes) and :mod:`llmpick.fit.speed` (speed); quantization sizes in
:mod:`llmpick.fit.quant`.
"""

from llmpick.fit.estimate import FitResult, fit_model
from llmpick.fit.memory import (
    LlamaCppSettings,
    kv_cache_bytes,
    llamacpp_kv_cache_bytes,
    llamacpp_n_ctx,
    weights_bytes,
)
from llmpick.fit.quant import (
    KV_CACHE_DTYPES,
    QUALITY_ORDER,
    Quantization,
    get_quantization,
    kv_bytes_per_element,
    list_quantizations,
)
from llmpick.fit.runtimes import RUNTIMES, Runtime, get_runtime, runtime_for_backend
from llmpick.fit.shape import (
    ModelShape,
    count_params,
    resolve_shape,
    shape_from_card,
    shape_from_config,
    shape_from_gguf,
)

__all__ = [
    "KV_CACHE_DTYPES",
    "QUALITY_ORDER",
    "RUNTIMES",
    "FitResult",
    "LlamaCppSettings",
    "ModelShape",
    "Quantization",
    "Runtime",
    "count_params",
    "fit_model",
    "get_quantization",
    "get_runtime",
    "kv_bytes_per_element",
    "kv_cache_bytes",
    "list_quantizations",
    "llamacpp_kv_cache_bytes",
    "llamacpp_n_ctx",
    "resolve_shape",
    "runtime_for_backend",
    "shape_from_card",
    "shape_from_config",
    "shape_from_gguf",
    "weights_bytes",
]
