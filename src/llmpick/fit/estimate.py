"""Fit a model to a device: will it run, with how much memory, and how fast.

It puts together the shape (:mod:`llmpick.fit.shape`), the quantization
(:mod:`llmpick.fit.quant`), the memory model (:mod:`llmpick.fit.memory`) and the
roofline (:mod:`llmpick.fit.speed`). Every figure in the :class:`FitResult` is
labelled ``exact`` (from the file or the architecture), ``spec`` (a vendor
figure), ``measured`` (on this machine) or ``estimated``, and ``basis`` says how
each one was obtained.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from llmpick.errors import UsageError
from llmpick.fit.calibration import Calibration, calibration_for
from llmpick.fit.memory import (
    RUNTIMES,
    VLLM_GPU_MEMORY_UTILIZATION,
    LlamaCppSettings,
    active_weights_bytes,
    kv_cache_bytes,
    llamacpp_kv_cache_bytes,
    llamacpp_n_ctx,
    runtime_overhead,
    weights_bytes,
)
from llmpick.fit.quant import Quantization, get_quantization, kv_bytes_per_element
from llmpick.fit.shape import ModelShape, resolve_shape
from llmpick.fit.speed import TRANSFORMERS_PER_LAYER_STEP_S, estimate_speed
from llmpick.hardware.devices import Device

__all__ = ["FitResult", "fit_model"]

_MAX_SEARCH_CONTEXT = 1 << 21
_MAX_SEARCH_SEQUENCES = 1 << 14


class FitResult(BaseModel):
    """Memory and speed estimates for one model, quantization, context and device.

    Byte counts are integers. ``fits`` is None only when the device memory is
    unknown. ``labels`` marks each figure exact, spec, measured or estimated;
    ``basis`` explains each estimate.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    model_source: str
    catalog_id: str | None
    runtime: str
    quant: str
    bits_per_weight: float | None
    context: int
    allocated_context: int
    batch: int
    kv_dtype: str
    prompt_tokens: int
    params_total: int
    params_active: int
    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    overhead_breakdown: dict[str, int]
    total_bytes: int
    usable_memory_bytes: int | None
    fits: bool | None
    max_context: int | None
    max_concurrent_sequences: int | None
    decode_tokens_per_second: float | None
    time_to_first_token_s: float | None
    device: dict[str, Any]
    basis: dict[str, str]
    labels: dict[str, str]
    warnings: list[str]

    def to_json_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the shape ``llmpick fit --format json`` prints)."""
        return self.model_dump(mode="json")


def _resolve_device(device: str | Device | None) -> Device:
    from llmpick.hardware import detect_local, get_device

    if isinstance(device, Device):
        return device
    if device is None:
        return detect_local()
    return get_device(device)


def _budget(device: Device, runtime: str) -> int:
    if runtime == "vllm":
        return int(device.memory_bytes * VLLM_GPU_MEMORY_UTILIZATION)
    return device.usable_memory_bytes


def fit_model(
    model: str | ModelShape,
    *,
    quant: str | None = None,
    context: int = 4096,
    batch: int = 1,
    kv_dtype: str = "f16",
    runtime: str = "llamacpp",
    device: str | Device | None = None,
    prompt_tokens: int | None = None,
    calibrated: bool = True,
    calibration: Calibration | None = None,
) -> FitResult:
    """Estimate memory and speed for ``model`` on ``device``.

    ``model`` is a catalog id, a bundled alias, a GGUF or config.json path, or
    a :class:`ModelShape`. ``quant`` None keeps a GGUF file as it is (exact
    weights) or uses the model's native dtype. ``device`` None detects this
    machine. ``prompt_tokens`` (default: ``context``) sizes the prefill for
    the time to first token and the KV cache read per decoded token. Speed on
    a device detected here is calibrated (``calibration``, else the stored one)
    unless ``calibrated`` is False; other devices' estimates never are.

    Raises ModelNotFoundError, ModelFileError/ConfigError (bad file),
    QuantizationError (unknown quant or KV dtype), HardwareError (unknown
    device) or UsageError (bad numbers).
    """
    if context < 1:
        raise UsageError(f"context must be at least 1 token, got {context}")
    if batch < 1:
        raise UsageError(f"batch must be at least 1, got {batch}")
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}", "use one of: " + ", ".join(RUNTIMES))
    kv_bytes_per_element(kv_dtype)  # validates the name early
    shape = model if isinstance(model, ModelShape) else resolve_shape(model)
    quantization: Quantization | None = get_quantization(quant) if quant else None
    dev = _resolve_device(device)
    prompt = prompt_tokens if prompt_tokens is not None else context
    warnings: list[str] = []

    if quantization is not None and runtime not in quantization.runtimes:
        warnings.append(
            f"{quantization.name} is a {quantization.family} format; {runtime} does not load "
            f"it (use --runtime {quantization.runtimes[0]})"
        )
    if shape.context_max and context > shape.context_max:
        warnings.append(
            f"context {context} exceeds the model's maximum {shape.context_max}; quality "
            "beyond it is not expected"
        )
    if runtime == "vllm" and dev.kind not in ("gpu", "generic"):
        warnings.append("vLLM needs a CUDA/ROCm GPU; this device is not one")
    if runtime == "transformers" and kv_dtype not in ("f16", "bf16", "fp16"):
        warnings.append(f"transformers caches K/V in the model dtype, not {kv_dtype}")

    weights, weights_exact, weights_basis = weights_bytes(shape, quantization)
    as_file = weights_exact
    repack = shape.cpu_repack_bytes if (runtime == "llamacpp" and as_file) else 0
    settings = LlamaCppSettings()

    def kv_at(tokens: int, sequences: int) -> int:
        if runtime == "llamacpp":
            return llamacpp_kv_cache_bytes(shape, tokens, sequences, kv_dtype, settings)
        return kv_cache_bytes(shape, tokens, sequences, kv_dtype)

    def total_at(tokens: int, sequences: int) -> tuple[int, int, int]:
        kv = kv_at(tokens, sequences)
        over = runtime_overhead(
            runtime,
            shape,
            context=tokens,
            batch=sequences,
            device=dev,
            weights=weights,
            repack_bytes=repack,
            settings=settings,
        )
        return weights + kv + over.total, kv, over.total

    kv = kv_at(context, batch)
    overhead = runtime_overhead(
        runtime,
        shape,
        context=context,
        batch=batch,
        device=dev,
        weights=weights,
        repack_bytes=repack,
        settings=settings,
    )
    total = weights + kv + overhead.total
    budget = _budget(dev, runtime)
    cuda_outside = overhead.parts.get("cuda_context", 0) if runtime == "vllm" else 0

    def fits_total(value: int) -> bool:
        return value - cuda_outside <= budget

    fits = fits_total(total)
    cap = shape.context_max or _MAX_SEARCH_CONTEXT
    max_context = _largest(lambda t: fits_total(total_at(t, 1)[0]), cap)
    max_sequences = _largest(lambda b: fits_total(total_at(context, b)[0]), _MAX_SEARCH_SEQUENCES)

    # Speed: weights read per decode step (untied input embeddings are only indexed).
    read_weights = active_weights_bytes(shape, weights)
    if not shape.tie_word_embeddings:
        if weights_exact and shape.input_embedding_bytes_exact:
            read_weights -= shape.input_embedding_bytes_exact
        elif not weights_exact:
            q = quantization or get_quantization(shape.native_dtype)
            bpw = q.bits_per_weight if q.quantizes_embeddings else 16
            read_weights -= round(shape.vocab_size * shape.hidden_size * bpw / 8)
    kv_read = kv_at(min(prompt, context), 1) if prompt else 0
    speed = estimate_speed(
        dev,
        bytes_per_step=max(read_weights, 1),
        kv_bytes_per_sequence=kv_read,
        active_params=shape.params_active,
        prompt_tokens=prompt,
        batch=batch,
        step_overhead_s=shape.num_layers * TRANSFORMERS_PER_LAYER_STEP_S
        if runtime == "transformers" and dev.kind == "gpu"
        else 0.0,
        step_overhead_basis=f"transformers eager step: {shape.num_layers} layers x "
        f"{TRANSFORMERS_PER_LAYER_STEP_S * 1e3:g} ms, measured on an H200",
    )

    if runtime == "llamacpp":
        n_ctx = llamacpp_n_ctx(context * batch)
        swa = (
            " sliding-window layers get the full context (llama.cpp's default swa_full=True);"
            if shape.sliding_layers
            else ""
        )
        kv_basis = (
            f"as llama.cpp allocates: n_ctx {n_ctx} (context x batch padded to 256) cells x "
            f"{shape.num_layers} layers x {shape.num_kv_heads} KV heads x "
            f"({shape.head_dim} + {shape.v_head_dim}) head dims x "
            f"{kv_bytes_per_element(kv_dtype):g} bytes ({kv_dtype});{swa}"
        )
    else:
        n_ctx = context
        swa = (
            f" {shape.sliding_layers} sliding-window layers count min(window, tokens);"
            if shape.sliding_layers
            else ""
        )
        kv_basis = (
            f"2 x {shape.num_layers} layers x {shape.num_kv_heads} KV heads x "
            f"{shape.head_dim} head dim x {context} tokens x {batch} batch x "
            f"{kv_bytes_per_element(kv_dtype):g} bytes ({kv_dtype});{swa}"
        )
    budget_text = (
        f"vLLM budget: {VLLM_GPU_MEMORY_UTILIZATION} x {dev.memory_bytes:,} bytes"
        if runtime == "vllm"
        else f"usable memory {budget:,} bytes ({dev.usable_memory_fraction:g} x memory)"
    )
    basis = {
        "weights_bytes": weights_basis,
        "kv_cache_bytes": kv_basis.rstrip(";"),
        "overhead_bytes": overhead.basis,
        "fits": f"total_bytes <= {budget_text}",
        "max_context": "largest context whose total still fits, capped at the model's "
        f"maximum {shape.context_max or 'unknown'}",
        "max_concurrent_sequences": f"how many sequences of {context} tokens fit together",
        "decode_tokens_per_second": speed.decode_basis,
        "time_to_first_token_s": speed.prefill_basis,
        "device": (dev.source or dev.bandwidth_basis or dev.note or dev.name),
    }
    kv_exact = shape.source in ("gguf", "bundled", "config", "catalog")
    labels = {
        "weights_bytes": "exact" if weights_exact else "estimated",
        "kv_cache_bytes": "exact" if kv_exact else "estimated",
        "overhead_bytes": "estimated",
        "total_bytes": "estimated",
        "fits": "estimated",
        "max_context": "estimated",
        "max_concurrent_sequences": "estimated",
        "decode_tokens_per_second": "estimated",
        "time_to_first_token_s": "estimated",
        "device_memory_bytes": "measured" if "memory_bytes" in dev.measured else "spec",
        "device_bandwidth": "measured" if "memory_bandwidth_gb_s" in dev.measured else "spec",
    }
    decode_rate = speed.decode_tokens_per_second
    ttft = speed.time_to_first_token_s
    cal = calibration_for(runtime, dev, calibration) if calibrated else None
    if cal is not None:
        if cal.decode_factor and decode_rate is not None:
            decode_rate *= cal.decode_factor
            basis["decode_tokens_per_second"] += "; " + cal.describe()
            labels["decode_tokens_per_second"] = "estimated (calibrated)"
        if cal.prefill_factor and ttft is not None:
            ttft *= cal.prefill_factor
            basis["time_to_first_token_s"] += "; " + cal.describe()
            labels["time_to_first_token_s"] = "estimated (calibrated)"
    if quantization is not None:
        quant_name, bpw = quantization.name, quantization.bits_per_weight
    elif weights_exact:
        quant_name, bpw = shape.file_quant or "gguf", weights * 8 / max(shape.params_total, 1)
    else:
        native = get_quantization(shape.native_dtype)
        quant_name, bpw = native.name, native.bits_per_weight
    return FitResult(
        model=shape.name,
        model_source=shape.source,
        catalog_id=shape.catalog_id,
        runtime=runtime,
        quant=quant_name,
        bits_per_weight=round(bpw, 4),
        context=context,
        allocated_context=n_ctx,
        batch=batch,
        kv_dtype=kv_dtype,
        prompt_tokens=prompt,
        params_total=shape.params_total,
        params_active=shape.params_active,
        weights_bytes=weights,
        kv_cache_bytes=kv,
        overhead_bytes=overhead.total,
        overhead_breakdown=dict(overhead.parts),
        total_bytes=total,
        usable_memory_bytes=budget,
        fits=fits,
        max_context=max_context,
        max_concurrent_sequences=max_sequences,
        decode_tokens_per_second=round(decode_rate, 2) if decode_rate is not None else None,
        time_to_first_token_s=round(ttft, 4) if ttft is not None else None,
        device=dev.summary(),
        basis=basis,
        labels=labels,
        warnings=warnings,
    )


def _largest(ok: Any, upper: int) -> int:
    """Return the largest n in [1, upper] with ok(n) true (ok is monotone decreasing); 0 if none."""
    if not ok(1):
        return 0
    if ok(upper):
        return upper
    lo, hi = 1, upper
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo
