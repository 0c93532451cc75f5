"""Recommendation scenarios on the real catalog."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmpick.catalog import load_catalog
from llmpick.errors import UsageError
from llmpick.hardware import get_device
from llmpick.recommend import Constraints, parse_weights, recommend


def test_coding_on_a_24gb_card_picks_qwen25_coder() -> None:
    rec = recommend(Constraints(task="coding", device="rtx4090"))
    top = rec.candidates[0]
    assert top.id.startswith("Qwen/Qwen2.5-Coder-")
    assert any("humaneval" in r or "evidence" in r for r in top.reasons)
    assert any(e.source for e in top.evidence)


def test_chinese_chat_on_16gb_picks_qwen() -> None:
    rec = recommend(Constraints(task="chat", languages=["zh"], device="rtx-4060-ti-16gb"))
    assert rec.candidates
    assert rec.candidates[0].id.startswith("Qwen/")
    card = load_catalog().get(rec.candidates[0].id)
    assert "zh" in card.languages
    assert any(e.id.startswith("meta-llama/") and "zh" in e.reason for e in rec.excluded)


@pytest.mark.parametrize("device", ["rtx-3060-12gb", "16gb", "rtx4090", "a100-80gb", "m2-max"])
def test_a_model_that_does_not_fit_is_never_recommended(device: str) -> None:
    rec = recommend(Constraints(task="general", device=device, top=100))
    usable = get_device(device).usable_memory_bytes
    assert rec.candidates
    for cand in rec.candidates:
        assert cand.fits is True
        assert cand.estimated_memory_bytes <= usable
    reasons = " ".join(e.reason for e in rec.excluded)
    assert "does not fit" in reasons


def test_best_quantization_that_fits_is_chosen() -> None:
    rec = recommend(Constraints(task="chat", device="rtx4090", top=100))
    by_id = {c.id: c for c in rec.candidates}
    # Q8_0 is the top of llama.cpp's ladder: bf16 doubles the bytes for -0.019% Mean Δp
    assert by_id["Qwen/Qwen2.5-7B-Instruct"].quant == "Q8_0"
    assert "highest precision worth its bytes" in by_id["Qwen/Qwen2.5-7B-Instruct"].quant_reason
    assert by_id["Qwen/Qwen2.5-32B-Instruct"].quant in ("Q4_K_M", "Q5_K_M")
    assert any(
        "binding constraint: memory" in r for r in by_id["Qwen/Qwen2.5-32B-Instruct"].reasons
    )


def test_license_context_size_filters() -> None:
    rec = recommend(
        Constraints(
            task="chat", device="h100", license="permissive", min_context=100_000, max_params_b=40,
            top=100,
        )
    )  # fmt: skip
    catalog = load_catalog()
    for cand in rec.candidates:
        card = catalog.get(cand.id)
        assert card.license.permissive
        assert card.context.max >= 100_000
        assert card.params.total <= 40e9
    reasons = {e.id: e.reason for e in rec.excluded}
    assert "not permissive" in reasons["meta-llama/Llama-3.1-8B-Instruct"]


def test_base_models_are_left_out_unless_asked() -> None:
    rec = recommend(Constraints(task="chat", device="cpu", top=100))
    assert all(c.id != "google/gemma-3-270m" for c in rec.candidates)
    assert any(e.id == "google/gemma-3-270m" and "base" in e.reason for e in rec.excluded)


def test_weights_change_the_ranking() -> None:
    speed_first = recommend(
        Constraints(
            task="chat", device="rtx4090", weights=parse_weights("quality=0,speed=1,cost=0")
        )
    )
    quality_first = recommend(
        Constraints(
            task="chat", device="rtx4090", weights=parse_weights("quality=1,speed=0,cost=0")
        )
    )
    fastest = speed_first.candidates[0]
    assert fastest.decode_tokens_per_second == max(
        c.decode_tokens_per_second or 0 for c in speed_first.candidates
    )
    assert quality_first.candidates[0].quality >= fastest.quality
    assert quality_first.weights.quality == 1


def test_bad_weights() -> None:
    with pytest.raises(UsageError):
        parse_weights("quality=x")
    with pytest.raises(UsageError):
        parse_weights("taste=1")
    with pytest.raises(UsageError):
        recommend(Constraints(task="dancing", device="rtx4090"))


def test_cli_recommend_json() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from llmpick.cli import main; main()", "recommend", "--task",
         "coding", "--device", "rtx4090", "--top", "3", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["candidates"]) == 3
    for cand in data["candidates"]:
        for key in ("id", "score", "quant", "fits", "params_total", "context_max",
                    "estimated_memory_bytes", "reasons"):  # fmt: skip
            assert key in cand
    assert all({"id", "reason"} <= set(e) for e in data["excluded"])


def test_cpu_prefers_an_interactive_quantization_and_says_why() -> None:
    """On a small CPU the bf16 that fits is too slow; a lower precision is chosen, explained."""
    from llmpick.recommend import USE_CASE_FLOORS, Constraints, recommend

    rec = recommend(Constraints(task="chat", device="cpu", top=10))
    slow_bf16 = [c for c in rec.candidates if c.quant == "bf16"]
    for cand in slow_bf16:
        assert not any("binding constraint: speed" in r for r in cand.reasons)
    chosen_for_speed = [
        c for c in rec.candidates if any("binding constraint: speed" in r for r in c.reasons)
    ]
    assert chosen_for_speed, "some model should drop precision for speed on a CPU"
    for cand in chosen_for_speed:
        assert cand.quant in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")
    # An explicit quantization is never overridden.
    pinned = recommend(Constraints(task="chat", device="cpu", quant="Q8_0", top=5))
    assert all(c.quant == "Q8_0" for c in pinned.candidates)
    assert USE_CASE_FLOORS["interactive"] == 8.0


def test_evidence_says_whether_it_was_verified_at_its_source() -> None:
    rec = recommend(Constraints(task="math", device="rtx4090", top=100))
    evidence = [e for c in rec.candidates for e in c.evidence]
    assert any(e.verified for e in evidence) and any(not e.verified for e in evidence)
    unverified = next(c for c in rec.candidates if any(not e.verified for e in c.evidence[:4]))
    line = next(r for r in unverified.reasons if r.startswith("evidence for math"))
    assert "[unverified]" in line
