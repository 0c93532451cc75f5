"""Ranking scenarios a user recognises, each top pick explained (no model loads)."""

from __future__ import annotations

import pytest

from llmpick.catalog import load_catalog
from llmpick.fit.quant_loss import QuantLoss, quality_loss
from llmpick.recommend import Constraints, recommend
from llmpick.recommend.evidence import contradicted, ranking_scores


def _top(**kwargs: object) -> tuple[object, list[str]]:
    rec = recommend(Constraints(top=5, **kwargs))  # type: ignore[arg-type]
    assert rec.candidates
    top = rec.candidates[0]
    return top, top.reasons


@pytest.mark.parametrize("device", ["16gb", "cpu"])
def test_general_assistant_is_not_a_coder_or_math_specialist(device: str) -> None:
    top, reasons = _top(task="general", device=device)
    assert "Coder" not in top.id and "Math" not in top.id  # type: ignore[attr-defined]
    assert any(r.startswith("coverage: ") and " of 10 general benchmarks" in r for r in reasons)


def test_a_math_specialist_for_general_use_says_what_it_costs() -> None:
    rec = recommend(Constraints(task="general", device="cpu", top=50))
    math = next(c for c in rec.candidates if "Math" in c.id)
    assert any("specialised for math, not general" in r for r in math.reasons)
    assert math.coverage.endswith("of 10 general benchmarks reported")


def test_coding_on_a_24gb_gpu_picks_a_coder() -> None:
    top, reasons = _top(task="coding", device="rtx4090")
    assert "Coder" in top.id  # type: ignore[attr-defined]
    assert any("specialised for coding" in r for r in reasons)


def test_chinese_chat_lists_chinese() -> None:
    _top_pick, reasons = _top(task="chat", languages=["zh"], device="rtx4090")
    assert any("languages zh listed" in r for r in reasons)
    assert any(r.startswith("coverage: ") for r in reasons)


def test_math_on_cpu_picks_math_evidence() -> None:
    rec = recommend(Constraints(task="math", device="cpu", top=5))
    assert any(
        e.benchmark in ("math", "gsm8k", "math-500") for c in rec.candidates for e in c.evidence
    )
    assert any("estimated decode" in r for r in rec.candidates[0].reasons)


def test_quantization_loss_is_sourced_and_ordered() -> None:
    losses = [quality_loss(None, q).quality_loss for q in ("bf16", "Q5_K_M", "Q4_K_M", "Q2_K")]
    assert losses == sorted(losses) and losses[0] == 0.0
    q4 = quality_loss("Qwen/Qwen2.5-7B-Instruct", "Q4_K_M")
    assert q4.basis == "sourced default" and "llama.cpp" in q4.source
    mine = QuantLoss(quant="Q4_K_M", quality_loss=0.02, basis="measured", source="x", data="y")
    assert quality_loss("m", "Q4_K_M", measured=mine) is mine


def test_ranking_never_counts_a_contradicted_third_party_figure() -> None:
    catalog = load_catalog()
    for card in catalog:
        for b in card.benchmarks:
            used = ranking_scores(card, b.name)
            assert not any(contradicted(s, card) for s in used)
            if any(s.origin == "maker" for s in card.scores(b.name)):
                assert all(s.origin == "maker" for s in used)
