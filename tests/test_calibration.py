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


def _store_half_speed() -> None:
    from llmpick.hardware import detect_local

    save_calibration(
        Calibration(
            host=host_key(),
            runtime="llamacpp",
            device=detect_local().id,
            decode_factor=0.5,
            prefill_factor=2.0,
            model="m",
            measured_at="2026-11-27",
        )
    )


def test_every_estimate_for_this_machine_is_calibrated_and_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmpick.cost import estimate_throughput
    from llmpick.hardware import get_device
    from llmpick.recommend import Constraints, recommend

    monkeypatch.setenv("LLMPICK_CACHE_DIR", str(tmp_path))
    model = "Qwen/Qwen2.5-0.5B-Instruct"
    raw_cpu = fit_model(model, quant="Q4_K_M", context=2048, device="cpu")
    raw_4090 = fit_model(model, quant="Q4_K_M", context=2048, device="rtx4090")
    raw_cost = estimate_throughput(model, get_device("cpu"), quant="Q4_K_M", context=2048)
    constraints = Constraints(  # one quantization: a slower estimate cannot switch to another
        task="chat", device="cpu", max_params_b=1, top=3, context=2048, quant="Q4_K_M"
    )
    raw_rec = recommend(constraints)
    _store_half_speed()

    cpu = fit_model(model, quant="Q4_K_M", context=2048, device="cpu")  # fit --device cpu
    assert cpu.decode_tokens_per_second == pytest.approx(
        raw_cpu.decode_tokens_per_second * 0.5, rel=1e-3
    )
    assert cpu.labels["decode_tokens_per_second"] == "estimated (calibrated)"
    other = fit_model(model, quant="Q4_K_M", context=2048, device="rtx4090")
    assert other == raw_4090  # another machine: untouched

    cost = estimate_throughput(model, get_device("cpu"), quant="Q4_K_M", context=2048)
    assert raw_cost is not None and cost is not None and cost.calibrated
    assert not raw_cost.calibrated
    assert cost.tokens_per_second == pytest.approx(raw_cost.tokens_per_second * 0.5, rel=1e-3)
    assert "calibrated on this machine" in cost.basis

    rec = recommend(constraints)
    assert rec.calibration is not None and "decode x 0.5" in rec.calibration
    assert raw_rec.calibration is None
    compared = 0
    for cand in rec.candidates:
        assert cand.decode_label == "estimated (calibrated)"
        assert any("(calibrated on this machine)" in r for r in cand.reasons)
        same = [c for c in raw_rec.candidates if (c.id, c.quant) == (cand.id, cand.quant)]
        for before in same:  # a slower estimate may pick a faster quantization instead
            compared += 1
            assert cand.decode_tokens_per_second == pytest.approx(
                (before.decode_tokens_per_second or 0) * 0.5, rel=1e-2
            )
    assert compared
    gpu = recommend(constraints.model_copy(update={"device": "rtx4090"}))
    assert gpu.calibration is None
    assert all(c.decode_label == "estimated" for c in gpu.candidates)


def test_a_calibration_for_another_local_device_does_not_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMPICK_CACHE_DIR", str(tmp_path))
    raw = fit_model("Qwen/Qwen2.5-0.5B-Instruct", quant="Q4_K_M", context=2048, device="cpu")
    save_calibration(
        Calibration(
            host=host_key(),
            runtime="llamacpp",
            device="cuda:7",
            decode_factor=0.5,
            model="m",
            measured_at="2026-11-27",
        )
    )
    again = fit_model("Qwen/Qwen2.5-0.5B-Instruct", quant="Q4_K_M", context=2048, device="cpu")
    assert again.decode_tokens_per_second == raw.decode_tokens_per_second


def test_cli_recommend_and_cost_show_the_calibration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import subprocess
    import sys

    monkeypatch.setenv("LLMPICK_CACHE_DIR", str(tmp_path))
    _store_half_speed()
    llmpick = str(Path(sys.executable).with_name("llmpick"))
    env = {**os.environ, "COLUMNS": "250"}
    rec = subprocess.run(
        [llmpick, "recommend", "--task", "chat", "--device", "cpu", "--top", "2"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "speeds: calibrated on this machine (decode x 0.5" in rec.stdout
    assert "(calibrated)" in rec.stdout
    cost = subprocess.run(
        [llmpick, "cost", "Qwen/Qwen2.5-0.5B-Instruct", "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "estimated, calibrated" in cost.stdout


@pytest.mark.slow
def test_choose_calibrates_from_its_own_bench_of_the_largest_local_model() -> None:
    from llmpick.choose.calibrate import calibration_from_bench
    from llmpick.context import Context

    context = Context()
    specs = [context.resolve("smollm2-135m-instruct"), context.resolve("gemma-3-270m")]
    raw = {
        s.name: fit_model(s.name, context=4096, prompt_tokens=64, calibrated=False) for s in specs
    }
    # synthetic timings: each model measured at a third of its estimated decode rate
    performance = {
        name: {
            "measured": {
                "time_per_output_token_s_p50": 3.0 / (fit.decode_tokens_per_second or 1),
                "time_to_first_token_s_p50": (fit.time_to_first_token_s or 0) * 2,
            },
            "settings": {"prompt_tokens": 64},
        }
        for name, fit in raw.items()
    }
    cal = calibration_from_bench(specs, performance, "cpu")
    assert cal is not None and cal.source == "choose's bench"
    assert cal.model == "gemma-3-270m"  # the larger weights
    assert cal.decode_factor == pytest.approx(1 / 3, rel=1e-6)
    assert cal.prefill_factor == pytest.approx(2.0, rel=1e-6)
    assert "from choose's bench of gemma-3-270m" in cal.describe()
    assert calibration_from_bench(specs, {}, "cpu") is None
