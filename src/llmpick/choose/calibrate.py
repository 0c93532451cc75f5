"""Calibrate the shortlist's speed estimates from choose's own bench of the local models.

``choose`` measures each runnable model here. When ``bench --calibrate`` has
stored no calibration for this machine, the same ratios it would store
(measured decode tokens/s over fit's uncalibrated estimate; measured over
estimated time to first token) are taken from these measurements, from the
largest llama.cpp model measured (the one whose decode is most bound by memory
bandwidth, as the shortlist's models are), and the shortlist is estimated again
with them. Nothing is written to the cache: the calibration lives in the result.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.backends.spec import ModelSpec
from llmpick.errors import LlmpickError
from llmpick.fit import FitResult, fit_model
from llmpick.fit.calibration import Calibration, host_key
from llmpick.fit.runtimes import LlamaCppRuntime

__all__ = ["calibration_from_bench"]


def _fit_for(spec: ModelSpec, prompt_tokens: int | None) -> FitResult | None:
    model = spec.name if spec.name in BUNDLED_MODELS else (spec.catalog_id or spec.model)
    try:
        return fit_model(model, context=4096, prompt_tokens=prompt_tokens, calibrated=False)
    except (LlmpickError, ValueError, OSError):  # no estimate: nothing to calibrate from
        return None


def calibration_from_bench(
    specs: list[ModelSpec], performance: dict[str, dict[str, Any]], device_id: str
) -> Calibration | None:
    """A llama.cpp calibration from choose's measurements, or None without one to use."""
    best: tuple[int, Calibration] | None = None
    for spec in specs:
        perf = performance.get(spec.name) or {}
        measured = perf.get("measured") or {}
        tpot = measured.get("time_per_output_token_s_p50")
        ttft = measured.get("time_to_first_token_s_p50")
        if spec.backend != LlamaCppRuntime.backend or not (tpot or ttft):
            continue
        raw = _fit_for(spec, (perf.get("settings") or {}).get("prompt_tokens"))
        if raw is None:
            continue
        decode = (
            (1.0 / tpot) / raw.decode_tokens_per_second
            if tpot and raw.decode_tokens_per_second
            else None
        )
        prefill = ttft / raw.time_to_first_token_s if ttft and raw.time_to_first_token_s else None
        if decode is None and prefill is None:
            continue
        cal = Calibration(
            host=host_key(),
            runtime=LlamaCppRuntime.name,
            device=device_id,
            decode_factor=decode,
            prefill_factor=prefill,
            model=spec.name,
            measured_at=dt.date.today().isoformat(),
            source="choose's bench",
            note=f"from choose's bench at {perf.get('settings')}",
        )
        if best is None or raw.weights_bytes > best[0]:
            best = (raw.weights_bytes, cal)
    return best[1] if best else None
