"""Fit a model to a device: will it run, with how much memory, and how fast.

It puts together the shape (:mod:`llmpick.fit.shape`), the quantization
(:mod:`llmpick.fit.quant`), the memory model (:mod:`llmpick.fit.memory`) and the
roofline (:mod:`llmpick.fit.speed`); what differs by runtime comes from its
strategy object (:mod:`llmpick.fit.runtimes`). Every figure in the :class:`FitResult` is
labelled ``exact`` (from the file or the architecture), ``spec`` (a vendor
figure), ``measured`` (on this machine) or ``estimated``, and ``basis`` says how
each one was obtained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmpick.errors import UsageError
from llmpick.fit.calibration import Calibration, calibration_for
from llmpick.fit.memory import Overhead, active_weights_bytes, weights_bytes
from llmpick.fit.quant import Quantization, get_quantization, kv_bytes_per_element
from llmpick.fit.runtimes import Runtime, get_runtime
from llmpick.fit.shape import ModelShape, resolve_shape
from llmpick.fit.speed import SpeedEstimate, estimate_speed
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


@dataclass(frozen=True)
class _Memory:
    """The memory side of a fit: weights, KV cache, overhead and what fits."""

    weights: int
    weights_exact: bool
    weights_basis: str
    kv: int
    overhead: Overhead
    total: int
    budget: int
    fits: bool
    max_context: int
    max_sequences: int


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
    device) or UsageError (bad numbers or an unknown runtime).
    """
    if context < 1:
        raise UsageError(f"context must be at least 1 token, got {context}")
    if batch < 1:
        raise UsageError(f"batch must be at least 1, got {batch}")
    rt = get_runtime(runtime)
    kv_bytes_per_element(kv_dtype)  # validates the name early
    shape = model if isinstance(model, ModelShape) else resolve_shape(model)
    quantization: Quantization | None = get_quantization(quant) if quant else None
    dev = _resolve_device(device)
    prompt = prompt_tokens if prompt_tokens is not None else context
    warnings = _warnings(shape, quantization, rt, dev, context, kv_dtype)
    mem = _memory(shape, quantization, rt, dev, context, batch, kv_dtype)
    speed = _speed(shape, quantization, rt, dev, mem, context, batch, prompt, kv_dtype)
    allocated, kv_basis = rt.kv_cache_basis(shape, context, batch, kv_dtype)
    basis = _basis(shape, rt, dev, mem, speed, context, kv_basis)
    labels = _labels(shape, dev, mem.weights_exact)
    decode_rate, ttft = speed.decode_tokens_per_second, speed.time_to_first_token_s
    cal = calibration_for(runtime, dev, calibration) if calibrated else None
    if cal is not None:
        decode_rate, ttft = _calibrate(cal, decode_rate, ttft, basis, labels)
    quant_name, bpw = _quant_label(shape, quantization, mem)
    return FitResult(
        model=shape.name,
        model_source=shape.source,
        catalog_id=shape.catalog_id,
        runtime=runtime,
        quant=quant_name,
        bits_per_weight=round(bpw, 4),
        context=context,
        allocated_context=allocated,
        batch=batch,
        kv_dtype=kv_dtype,
        prompt_tokens=prompt,
        params_total=shape.params_total,
        params_active=shape.params_active,
        weights_bytes=mem.weights,
        kv_cache_bytes=mem.kv,
        overhead_bytes=mem.overhead.total,
        overhead_breakdown=dict(mem.overhead.parts),
        total_bytes=mem.total,
        usable_memory_bytes=mem.budget,
        fits=mem.fits,
        max_context=mem.max_context,
        max_concurrent_sequences=mem.max_sequences,
        decode_tokens_per_second=round(decode_rate, 2) if decode_rate is not None else None,
        time_to_first_token_s=round(ttft, 4) if ttft is not None else None,
        device=dev.summary(),
        basis=basis,
        labels=labels,
        warnings=warnings,
    )


def _warnings(
    shape: ModelShape,
    quantization: Quantization | None,
    rt: Runtime,
    dev: Device,
    context: int,
    kv_dtype: str,
) -> list[str]:
    warnings: list[str] = []
    if quantization is not None and rt.name not in quantization.runtimes:
        warnings.append(
            f"{quantization.name} is a {quantization.family} format; {rt.name} does not load "
            f"it (use --runtime {quantization.runtimes[0]})"
        )
    if shape.context_max and context > shape.context_max:
        warnings.append(
            f"context {context} exceeds the model's maximum {shape.context_max}; quality "
            "beyond it is not expected"
        )
    return warnings + rt.warnings(dev, kv_dtype)


def _memory(
    shape: ModelShape,
    quantization: Quantization | None,
    rt: Runtime,
    dev: Device,
    context: int,
    batch: int,
    kv_dtype: str,
) -> _Memory:
    """Weights + KV + overhead at ``context`` x ``batch``, and the largest that fit."""
    weights, weights_exact, weights_basis = weights_bytes(shape, quantization)
    repack = rt.repack_bytes(shape, weights_exact)

    def parts_at(tokens: int, sequences: int) -> tuple[int, Overhead]:
        kv = rt.kv_cache_bytes(shape, tokens, sequences, kv_dtype)
        over = rt.overhead(
            shape,
            context=tokens,
            batch=sequences,
            device=dev,
            weights=weights,
            repack_bytes=repack,
        )
        return kv, over

    kv, overhead = parts_at(context, batch)
    total = weights + kv + overhead.total
    budget = rt.budget_bytes(dev)
    outside = rt.outside_budget_bytes(overhead)

    def fits_at(tokens: int, sequences: int) -> bool:
        kv_n, over_n = parts_at(tokens, sequences)
        return weights + kv_n + over_n.total - outside <= budget

    cap = shape.context_max or _MAX_SEARCH_CONTEXT
    return _Memory(
        weights=weights,
        weights_exact=weights_exact,
        weights_basis=weights_basis,
        kv=kv,
        overhead=overhead,
        total=total,
        budget=budget,
        fits=total - outside <= budget,
        max_context=_largest(lambda t: fits_at(t, 1), cap),
        max_sequences=_largest(lambda b: fits_at(context, b), _MAX_SEARCH_SEQUENCES),
    )


def _speed(
    shape: ModelShape,
    quantization: Quantization | None,
    rt: Runtime,
    dev: Device,
    mem: _Memory,
    context: int,
    batch: int,
    prompt: int,
    kv_dtype: str,
) -> SpeedEstimate:
    """The roofline estimate from the bytes a decode step reads."""
    # Untied input embeddings are only indexed, so a decode step does not read them.
    read_weights = active_weights_bytes(shape, mem.weights)
    if not shape.tie_word_embeddings:
        if mem.weights_exact and shape.input_embedding_bytes_exact:
            read_weights -= shape.input_embedding_bytes_exact
        elif not mem.weights_exact:
            q = quantization or get_quantization(shape.native_dtype)
            bpw = q.bits_per_weight if q.quantizes_embeddings else 16
            read_weights -= round(shape.vocab_size * shape.hidden_size * bpw / 8)
    kv_read = rt.kv_cache_bytes(shape, min(prompt, context), 1, kv_dtype) if prompt else 0
    step_s, step_basis = rt.step_overhead(shape, dev)
    return estimate_speed(
        dev,
        bytes_per_step=max(read_weights, 1),
        kv_bytes_per_sequence=kv_read,
        active_params=shape.params_active,
        prompt_tokens=prompt,
        batch=batch,
        step_overhead_s=step_s,
        step_overhead_basis=step_basis,
    )


def _basis(
    shape: ModelShape,
    rt: Runtime,
    dev: Device,
    mem: _Memory,
    speed: SpeedEstimate,
    context: int,
    kv_basis: str,
) -> dict[str, str]:
    """How each figure was obtained."""
    return {
        "weights_bytes": mem.weights_basis,
        "kv_cache_bytes": kv_basis.rstrip(";"),
        "overhead_bytes": mem.overhead.basis,
        "fits": f"total_bytes <= {rt.budget_basis(dev)}",
        "max_context": "largest context whose total still fits, capped at the model's "
        f"maximum {shape.context_max or 'unknown'}",
        "max_concurrent_sequences": f"how many sequences of {context} tokens fit together",
        "decode_tokens_per_second": speed.decode_basis,
        "time_to_first_token_s": speed.prefill_basis,
        "device": (dev.source or dev.bandwidth_basis or dev.note or dev.name),
    }


def _labels(shape: ModelShape, dev: Device, weights_exact: bool) -> dict[str, str]:
    kv_exact = shape.source in ("gguf", "bundled", "config", "catalog")
    return {
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


def _calibrate(
    cal: Calibration,
    decode_rate: float | None,
    ttft: float | None,
    basis: dict[str, str],
    labels: dict[str, str],
) -> tuple[float | None, float | None]:
    """Apply ``cal``'s factors, noting it in ``basis`` and ``labels`` (updated in place)."""
    if cal.decode_factor and decode_rate is not None:
        decode_rate *= cal.decode_factor
        basis["decode_tokens_per_second"] += "; " + cal.describe()
        labels["decode_tokens_per_second"] = "estimated (calibrated)"
    if cal.prefill_factor and ttft is not None:
        ttft *= cal.prefill_factor
        basis["time_to_first_token_s"] += "; " + cal.describe()
        labels["time_to_first_token_s"] = "estimated (calibrated)"
    return decode_rate, ttft


def _quant_label(
    shape: ModelShape, quantization: Quantization | None, mem: _Memory
) -> tuple[str, float]:
    """(quantization name, bits per weight) as reported."""
    if quantization is not None:
        return quantization.name, quantization.bits_per_weight
    if mem.weights_exact:
        return shape.file_quant or "gguf", mem.weights * 8 / max(shape.params_total, 1)
    native = get_quantization(shape.native_dtype)
    return native.name, native.bits_per_weight


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
