"""What a bench result is compared with: the device it ran on, fit's estimate, calibration.

``fit_estimate`` asks :mod:`llmpick.fit` what it expects of the model here (only
when the model runs on this machine); ``calibrate_fit`` stores measured /
estimated speed factors so ``fit`` can correct its estimates on this host.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import platform
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from llmpick.backends.base import Backend
from llmpick.backends.spec import ModelSpec
from llmpick.bench.memory import MemoryReport
from llmpick.bench.results import BenchResult, Estimate
from llmpick.errors import LlmpickError
from llmpick.fit.calibration import Calibration, host_key, save_calibration
from llmpick.fit.runtimes import runtime_for_backend
from llmpick.hardware import detect_local

__all__ = ["calibrate_fit", "device_label", "fit_estimate"]


def _is_loopback(url: str | None) -> bool:
    host = urlparse(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_label(backend: Backend, memory: MemoryReport | None) -> str:
    """Where the model ran: the server, the GPU, or this CPU and its threads."""
    if not backend.is_local:
        return f"server at {backend.describe().base_url}"
    n_gpu_layers = getattr(backend.options, "n_gpu_layers", 0)
    if memory is not None and memory.gpu_name and n_gpu_layers != 0:
        return f"gpu: {memory.gpu_name}"
    threads = getattr(backend.options, "n_threads", None) or os.cpu_count()
    return f"cpu: {_cpu_name()} ({threads} threads)"


def calibrate_fit(
    spec: ModelSpec,
    backend: Backend,
    window: int | None,
    prompt_tokens: int | None,
    result: BenchResult,
) -> str:
    """Store measured / (uncalibrated) estimated speed for fit on this machine."""
    if not backend.is_local:
        return "not calibrated: only in-process backends measure this machine"
    point = next((r for r in result.results if r.point.concurrency == 1), None)
    if point is None:
        return "not calibrated: calibration needs a concurrency-1 load point"
    raw, why = fit_estimate(spec, backend, window, prompt_tokens, calibrated=False)
    if raw is None:
        return f"not calibrated: {why}"
    tpot = point.metrics.time_per_output_token_s.p50
    ttft = point.metrics.time_to_first_token_s.p50
    decode = (
        (1.0 / tpot) / raw.decode_tokens_per_second
        if tpot and raw.decode_tokens_per_second
        else None
    )
    prefill = ttft / raw.time_to_first_token_s if ttft and raw.time_to_first_token_s else None
    if decode is None and prefill is None:
        return "not calibrated: no TPOT or TTFT was measured"

    cal = Calibration(
        host=host_key(),
        runtime=runtime_for_backend(spec.backend),
        device=detect_local().id,  # the device the uncalibrated estimate was made for
        decode_factor=decode,
        prefill_factor=prefill,
        model=result.model,
        measured_at=dt.date.today().isoformat(),
        note=f"{len(point.timings)} requests, {prompt_tokens} prompt tokens",
    )
    path = save_calibration(cal)
    return f"{cal.describe()}; saved to {path} (used by fit, recommend and cost here)"


def fit_estimate(
    spec: ModelSpec,
    backend: Backend,
    window: int | None,
    prompt_tokens: int | None,
    calibrated: bool = True,
) -> tuple[Estimate | None, str | None]:
    """Ask ``fit`` for its estimate of this model on this machine; None and why if none."""
    if not backend.is_local and not _is_loopback(backend.describe().base_url):
        return None, "no estimate: the server is not on this machine"
    try:
        from llmpick.fit import fit_model
    except ImportError:
        return None, "no estimate: llmpick.fit.fit_model is not available"
    path = getattr(backend, "path", None)
    model_ref = str(path) if path is not None else (spec.catalog_id or spec.model)
    kwargs: dict[str, Any] = {
        "context": window or 4096,
        "batch": 1,
        "prompt_tokens": prompt_tokens,
        "calibrated": calibrated,
        "runtime": runtime_for_backend(spec.backend),
    }
    try:
        fit = fit_model(model_ref, **kwargs)
    except LlmpickError as exc:
        return None, f"no estimate: {exc.one_line()}"
    except (ValueError, OSError) as exc:  # an estimate must never sink a measurement
        return None, f"no estimate: {type(exc).__name__}: {exc}"
    basis = fit.basis
    estimate = Estimate(
        decode_tokens_per_second=fit.decode_tokens_per_second,
        time_to_first_token_s=fit.time_to_first_token_s,
        total_bytes=fit.total_bytes,
        basis="; ".join(f"{k}: {v}" for k, v in basis.items())
        if isinstance(basis, dict)
        else str(basis),
    )
    return estimate, None
