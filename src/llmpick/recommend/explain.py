"""The reasons a candidate carries: binding constraint, evidence and coverage, format, ties.

``llmpick recommend --explain`` prints them all; the table view prints the first few.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmpick.recommend.tasks import TASK_SPECIALIZATION

if TYPE_CHECKING:
    from llmpick.catalog import ModelCard
    from llmpick.fit.quant_loss import QuantLoss
    from llmpick.recommend.models import Candidate, Constraints
    from llmpick.recommend.quality import QualityEstimate
    from llmpick.recommend.quant_choice import QuantChoice

__all__ = ["quality_reasons", "shortlist_reasons"]


def _evidence_line(card: ModelCard, c: Constraints, est: QualityEstimate) -> str:
    if est.figures:
        shown = ", ".join(
            f"{f.name} {f.value:g} ({f.protocol.describe()}; {f.source})"
            + ("" if f.verified else " [unverified]")
            for f in est.figures[:4]
        )
        line = f"evidence for {c.task}: {shown}"
    else:
        line = (
            f"no {c.task} benchmark for this card; ranked on its general standing "
            "(shrunk toward a size-and-generation prior)"
        )
    if est.base_figures:
        line += "; base-model figures shown, not ranked: " + ", ".join(
            f"{f.name} {f.value:g}" for f in est.base_figures[:3]
        )
    del card
    return line


def quality_reasons(
    card: ModelCard,
    c: Constraints,
    est: QualityEstimate,
    choice: QuantChoice,
    loss: QuantLoss,
    mismatch: str | None,
    floor: float,
) -> list[str]:
    """The per-candidate reasons (before the shortlist's ties are known)."""
    fit = choice.fit
    assert fit is not None
    low, high = est.interval
    reasons = [
        _evidence_line(card, c, est),
        f"coverage: {len(est.reported)} of {len(est.reported) + len(est.missing)} {c.task} "
        f"benchmarks reported; quality interval {low:.2f}-{high:.2f} "
        f"(confidence {est.confidence}; missing figures widen it and are not imputed "
        "upward)",
    ]
    matching = [s for s in TASK_SPECIALIZATION.get(c.task, ()) if s in card.specialization]
    if matching and c.task != "chat":
        reasons.append(f"specialised for {c.task} ({', '.join(card.specialization)})")
    if est.raised_to:
        reasons.append(
            f"ranked at least level with its smaller sibling {est.raised_to} (same family "
            "and generation; a larger sibling is not ranked lower for reporting less)"
        )
    if mismatch:
        reasons.append(
            f"specialised for {mismatch}, not {c.task}: quality lowered (a narrow specialist "
            "answers other requests worse than its benchmarks suggest)"
        )
    if fit.context > card.context.native:
        reasons.append(
            f"{fit.context:,} tokens exceed the native {card.context.native:,} window: needs "
            f"{card.context.extension or 'context extension'}; quality lowered"
        )
    reasons.append(choice.why)
    if loss.basis == "measured":  # the user's own measurement is named, even when lossless
        reasons.append(
            f"quantization {loss.quant} costs quality x {1 - loss.quality_loss:.4f} "
            f"(measured: {loss.source}; {loss.data})"
        )
    elif loss.quality_loss > 0:
        reasons.append(
            f"quantization {loss.quant} costs quality x {1 - loss.quality_loss:.4f} "
            f"({loss.basis}: {loss.data})"
        )
    rate = fit.decode_tokens_per_second
    if rate is not None:
        calibrated = fit.labels.get("decode_tokens_per_second") == "estimated (calibrated)"
        label = " (calibrated on this machine)" if calibrated else ""
        if choice.below_floor:
            reasons.append(
                f"binding constraint: speed; estimated decode {rate:.0f} tokens/s{label} is "
                f"below the {floor:g} tokens/s this use case needs: demoted"
            )
        else:
            reasons.append(f"estimated decode {rate:.0f} tokens/s{label} (floor {floor:g})")
    reasons.append(
        f"license {card.license.name}"
        + (" (permissive)" if card.license.permissive else "")
        + ("" if card.license.commercial_use else ", no commercial use")
    )
    if c.languages:
        reasons.append(f"languages {', '.join(c.languages)} listed")
    return reasons


def shortlist_reasons(
    shortlist: list[Candidate], ranked: list[Candidate], margin: float, sub4: bool
) -> None:
    """Add the ties (within ``margin`` of quality) and the sub-4-bit note, in place."""
    for cand in shortlist:
        tied = [
            o.id
            for o in ranked
            if o.id != cand.id
            and abs(o.quality - cand.quality) <= margin
            and o.below_speed_floor == cand.below_speed_floor
        ][:4]
        cand.tied_with = tied
        if tied:
            cand.reasons.append(
                f"tied on quality (within {margin:g}) with {', '.join(tied)}: the evidence "
                "does not separate them; speed and memory headroom break the tie, and your own "
                "data should decide"
            )
        if sub4:
            cand.reasons.append(
                "no model fits this device at 4 bits or more: sub-4-bit formats were allowed"
            )
        binding = cand.binding_constraint
        cand.reasons.insert(
            0,
            f"binding constraint: {binding}"
            if binding != "none"
            else "binding constraint: none (quality decided; the best format fits)",
        )
