"""bench --calibrate stores measured/estimated speed factors that fit then applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmpick.fit import fit_model
from llmpick.fit.calibration import Calibration, host_key, load_calibration, save_calibration


def test_fit_applies_a_stored_calibration_for_this_machine_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMPICK_CACHE_DIR", str(tmp_path))
    raw = fit_model("Qwen/Qwen2.5-0.5B-Instruct", quant="Q4_K_M", context=2048)
    save_calibration(
        Calibration(
            host=host_key(),
            runtime="llamacpp",
            decode_factor=0.5,
            prefill_factor=2.0,
            model="m",
            measured_at="2026-11-27",
        )
    )
    cal = fit_model("Qwen/Qwen2.5-0.5B-Instruct", quant="Q4_K_M", context=2048)
    assert cal.decode_tokens_per_second == pytest.approx(
        raw.decode_tokens_per_second * 0.5, rel=1e-3
    )
    assert cal.time_to_first_token_s == pytest.approx(raw.time_to_first_token_s * 2.0, rel=1e-2)
    assert "calibrated on this machine" in cal.basis["decode_tokens_per_second"]
    assert cal.labels["decode_tokens_per_second"] == "estimated (calibrated)"
    other = fit_model("Qwen/Qwen2.5-0.5B-Instruct", quant="Q4_K_M", context=2048, device="rtx4090")
    assert "calibrated" not in other.basis["decode_tokens_per_second"]
    off = fit_model("Qwen/Qwen2.5-0.5B-Instruct", quant="Q4_K_M", context=2048, calibrated=False)
    assert off.decode_tokens_per_second == raw.decode_tokens_per_second


@pytest.mark.slow
def test_bench_calibrate_brings_the_estimate_to_the_measurement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    from llmpick.bench import BenchConfig, run_bench
    from llmpick.context import Context

    monkeypatch.setenv("LLMPICK_CACHE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    config = BenchConfig(
        concurrency=(1,), prompt_tokens=32, max_tokens=24, requests=3, calibrate=True
    )
    result = run_bench(Context(), "smollm2-135m-instruct", config)
    assert any("calibrated on this machine" in note for note in result.notes)
    cal = load_calibration("llamacpp")
    assert cal is not None and cal.decode_factor and cal.prefill_factor
    # The next estimate for this machine uses the factors: it now matches this run.
    measured = 1.0 / result.results[0].metrics.time_per_output_token_s.p50
    again = fit_model(
        str(smollm2_path), context=(result.estimate and 4096) or 4096, prompt_tokens=32
    )
    assert again.decode_tokens_per_second == pytest.approx(measured, rel=0.05)
