"""Constraints -> hard filters -> ranking -> an explained shortlist.

Hard filters, in order (the first one a model fails is its exclusion reason):
instruct/chat only (base models unless ``include_base``), license, minimum
context, languages, size, API price, then *fits*: the best quantization that
fits the device at the needed context, tried from highest quality down
(:data:`llmpick.fit.quant.QUALITY_ORDER`, restricted to the runtime's formats).
When that format is estimated below 10 tokens/s (typical on CPUs), the
highest precision down to Q4_K_M that is interactive is taken instead, and the
candidate says so ("binding constraint: speed"); ``--quant`` pins a format.

Ranking, each part in [0, 1], combined with the weights (default quality 0.6,
speed 0.2, cost 0.2):

- quality: ``0.8 x evidence + 0.2 x specialization match - 0.15 x narrow mismatch``,
  then ``x (1 - quantization loss)``. Evidence is the mean over *all* the task's
  benchmarks (:mod:`llmpick.recommend.tasks`), each min-max normalised across
  every catalog model reporting it (raw value / 100 when fewer than 3 do); a
  benchmark the model does not report is imputed at half the size prior
  ``log10(params / 1e8) / 3.5``, so a specialist that reports only its specialty
  is not compared on it alone; the range with missing ones at 0 and 1 and the
  coverage ("3 of 7 general benchmarks reported") are shown, and confidence is
  high from 40% coverage, medium from 2 benchmarks (or 25%), else low. Only
  the maker's figure counts where one exists (:mod:`llmpick.recommend.evidence`).
  A narrow specialist (coder, math) ranked for another task loses 0.15; a
  specialization match with no benchmark of the task behind it earns 0.1, not 0.2.
  Quantization loss comes from :mod:`llmpick.fit.quant_loss`.
- speed: estimated decode tokens/s as ``tps / (tps + 30)`` (30 tokens/s -> 0.5);
  0 when the device's bandwidth is unknown.
- cost: the headroom left on the device, ``1 - total_bytes / usable memory``
  (a smaller footprint means a cheaper machine or more concurrent users); an
  API price, where the catalog lists one, only filters (``max_price``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from llmpick.errors import UsageError
from llmpick.fit import QUALITY_ORDER, FitResult, fit_model, get_quantization, shape_from_card
from llmpick.fit.calibration import Calibration, calibration_for
from llmpick.fit.quant_loss import LossLookup, QuantLoss, quality_loss
from llmpick.hardware import Device, detect_local, get_device
from llmpick.recommend.evidence import ranking_scores
from llmpick.recommend.models import (
    Candidate,
    Constraints,
    Evidence,
    Exclusion,
    Recommendation,
)
from llmpick.recommend.tasks import TASK_BENCHMARKS, TASK_SPECIALIZATION

if TYPE_CHECKING:
    from llmpick.catalog import Catalog, ModelCard

__all__ = ["recommend"]


def _device(constraints: Constraints) -> Device:
    if constraints.device is None:
        return detect_local()
    return get_device(constraints.device)


def _quant_order(constraints: Constraints) -> list[str]:
    if constraints.quant:
        return [get_quantization(constraints.quant).name]
    return [
        name for name in QUALITY_ORDER if constraints.runtime in get_quantization(name).runtimes
    ]


def _benchmark_ranges(cards: Iterable[ModelCard]) -> dict[str, tuple[float, float, int]]:
    values: dict[str, list[float]] = {}
    for card in cards:
        per_card: dict[str, list[float]] = {}
        for b in card.benchmarks:
            per_card.setdefault(b.name, []).append(b.value)
        for name, vals in per_card.items():
            values.setdefault(name, []).append(sum(vals) / len(vals))
    return {name: (min(v), max(v), len(v)) for name, v in values.items()}


def _normalise(value: float, lo: float, hi: float, count: int) -> float:
    if count < 3 or hi - lo < 1e-9:
        return value / 100
    return (value - lo) / (hi - lo)


#: a narrow specialization, and the tasks it suits; for any other task it costs quality
NARROW_SPECIALIZATIONS: dict[str, tuple[str, ...]] = {
    "coder": ("coding",),
    "math": ("math", "reasoning"),
}
MISMATCH_PENALTY = 0.15


def _size_prior(card: ModelCard) -> float:
    return min(max(math.log10(card.params.total / 1e8) / 3.5, 0.0), 1.0)


class _Quality:
    """A model's quality for a task before quantization, with its coverage and range."""

    def __init__(self, card: ModelCard, task: str, ranges: dict[str, tuple[float, float, int]]):
        wanted = TASK_BENCHMARKS[task]
        self.evidence: list[Evidence] = []
        normalised: list[float] = []
        for name in wanted:
            scores = ranking_scores(card, name)
            if not scores:
                continue
            mean = sum(s.value for s in scores) / len(scores)
            lo, hi, count = ranges[name]
            normalised.append(_normalise(mean, lo, hi, count))
            self.evidence += [
                Evidence(
                    benchmark=name,
                    value=s.value,
                    protocol=s.protocol.describe(),
                    source=s.source,
                    origin=s.origin,
                    verified=s.verified,
                )
                for s in scores
            ]
        self.missing = [n for n in wanted if not ranking_scores(card, n)]
        # Imputation: a benchmark the model does not report counts at half the size prior
        # (what a model of its size scores with no evidence); the range spans 0..1 for it.
        imputed = 0.5 * _size_prior(card)
        total = len(wanted)
        observed = sum(normalised)
        evidence_score = (observed + imputed * len(self.missing)) / total
        self.range = (observed / total, (observed + len(self.missing)) / total)
        self.coverage = f"{len(normalised)} of {total} {task} benchmarks reported"
        share = len(normalised) / total
        self.confidence = (
            "high" if share >= 0.4 else "medium" if len(normalised) >= 2 or share >= 0.25 else "low"
        )
        specialised = any(s in card.specialization for s in TASK_SPECIALIZATION.get(task, ()))
        self.mismatch = next(
            (
                s
                for s, suits in NARROW_SPECIALIZATIONS.items()
                if s in card.specialization
                and "general" not in card.specialization
                and task not in suits
            ),
            None,
        )
        # a specialization claimed with no benchmark of the task behind it counts half
        bonus = (0.2 if normalised else 0.1) if specialised else 0.0
        self.value = 0.8 * evidence_score + bonus - (MISMATCH_PENALTY if self.mismatch else 0.0)


def _speed_score(tps: float | None) -> float:
    return 0.0 if not tps else tps / (tps + 30)


def _first_failed_filter(card: ModelCard, c: Constraints) -> str | None:
    if "base" in card.specialization and not c.include_base:
        return "base (pretrained) model; pass include_base to consider it"
    if c.license == "commercial" and not card.license.commercial_use:
        return f"license {card.license.name} does not allow commercial use"
    if c.license == "permissive" and not card.license.permissive:
        restrictions = "; ".join(card.license.restrictions[:1]) or "not permissive"
        return f"license {card.license.name} is not permissive ({restrictions})"
    if c.min_context and card.context.max < c.min_context:
        return f"context {card.context.max:,} is below the required {c.min_context:,}"
    if c.languages:
        lacking = [lang for lang in c.languages if lang not in card.languages]
        if lacking:
            return f"does not list language(s) {', '.join(lacking)}"
    if c.max_params_b is not None and card.params.total > c.max_params_b * 1e9:
        return f"{card.params.total / 1e9:.1f}B parameters exceed the {c.max_params_b:g}B limit"
    if c.max_price is not None and card.prices:
        cheapest = min(p.output_usd_per_mtok for p in card.prices)
        if cheapest > c.max_price:
            return f"cheapest API output price ${cheapest:g}/Mtok exceeds ${c.max_price:g}"
    return None


#: below this estimated decode rate a model is not interactive; lower-precision
#: formats are then preferred, down to :data:`SPEED_FLOOR_QUANT`
INTERACTIVE_TOKENS_PER_SECOND = 10.0
SPEED_FLOOR_QUANT = "Q4_K_M"


def _best_fit(
    card: ModelCard,
    c: Constraints,
    device: Device,
    context: int,
    calibration: Calibration | None = None,
) -> tuple[FitResult | None, FitResult | None, str | None]:
    """(chosen fitting result, smallest tried result, why a lower precision was chosen).

    The best quantization that fits wins, unless its estimated decode rate is
    below :data:`INTERACTIVE_TOKENS_PER_SECOND` (typical on CPUs): then the
    highest-precision format down to :data:`SPEED_FLOOR_QUANT` that reaches it
    is taken, or the fastest of those when none does.
    """
    shape = shape_from_card(card)
    smallest: FitResult | None = None
    order = _quant_order(c)
    for index, quant in enumerate(order):
        result = fit_model(
            shape,
            quant=quant,
            context=context,
            runtime=c.runtime,
            device=device,
            calibration=calibration,
        )
        if not result.fits:
            smallest = result
            continue
        rate = result.decode_tokens_per_second
        if c.quant or rate is None or rate >= INTERACTIVE_TOKENS_PER_SECOND:
            return result, smallest, None
        floor = order.index(SPEED_FLOOR_QUANT) if SPEED_FLOOR_QUANT in order else index
        chosen = result
        for lower in order[index + 1 : floor + 1]:
            other = fit_model(
                shape,
                quant=lower,
                context=context,
                runtime=c.runtime,
                device=device,
                calibration=calibration,
            )
            if not other.fits or other.decode_tokens_per_second is None:
                continue
            if other.decode_tokens_per_second > (chosen.decode_tokens_per_second or 0):
                chosen = other
            if other.decode_tokens_per_second >= INTERACTIVE_TOKENS_PER_SECOND:
                break
        if chosen is result:
            return result, smallest, None
        note = (
            f"binding constraint: speed; {result.quant} fits but is estimated at "
            f"{rate:.1f} tokens/s, {chosen.quant} at "
            f"{chosen.decode_tokens_per_second or 0:.1f} (interactive use wants "
            f">= {INTERACTIVE_TOKENS_PER_SECOND:g}; pass --quant to override)"
        )
        return chosen, smallest, note
    return None, smallest, None


def recommend(
    constraints: Constraints,
    catalog: Catalog | None = None,
    calibration: Calibration | None = None,
    losses: LossLookup | None = None,
) -> Recommendation:
    """Filter the catalog by ``constraints``, rank what is left, and explain it.

    Every candidate fits the device (``fits`` is True) with the quantization
    shown. Speeds on a device of this machine are calibrated (``calibration``,
    else the one ``bench --calibrate`` stored). A quantization's quality loss is
    the one ``llmpick quant`` measured on that model when ``losses`` has it, else
    the sourced default per format. Raises
    HardwareError/QuantizationError/UsageError for bad input.
    """
    if constraints.task not in TASK_BENCHMARKS:
        raise UsageError(
            f"unknown task {constraints.task!r}", "use one of: " + ", ".join(TASK_BENCHMARKS)
        )
    if catalog is None:
        from llmpick.catalog import load_catalog

        catalog = load_catalog()
    device = _device(constraints)
    context = constraints.context or constraints.min_context or 4096
    ranges = _benchmark_ranges(catalog)
    weights = constraints.weights.normalised()
    candidates: list[Candidate] = []
    excluded: list[tuple[float, Exclusion]] = []

    for card in catalog:
        q = _Quality(card, constraints.task, ranges)
        quality, confidence, evidence, missing = q.value, q.confidence, q.evidence, q.missing
        failed = _first_failed_filter(card, constraints)
        if failed is not None:
            excluded.append((quality, Exclusion(id=card.id, reason=failed)))
            continue
        fit, smallest, speed_note = _best_fit(card, constraints, device, context, calibration)
        if fit is None:
            tried = smallest.quant if smallest else "any quantization"
            need = f" (needs {smallest.total_bytes / 2**30:.1f} GiB)" if smallest else ""
            excluded.append(
                (
                    quality,
                    Exclusion(
                        id=card.id,
                        reason=f"does not fit {device.name} at {context:,} tokens even at "
                        f"{tried}{need}; usable {device.usable_memory_bytes / 2**30:.1f} GiB",
                    ),
                )
            )
            continue
        measured = losses(card.id, fit.quant) if losses is not None else None
        loss = quality_loss(card.id, fit.quant, measured)
        quality *= 1 - loss.quality_loss
        speed = _speed_score(fit.decode_tokens_per_second)
        budget = fit.usable_memory_bytes or device.usable_memory_bytes
        cost = max(0.0, 1 - fit.total_bytes / budget)
        score = weights.quality * quality + weights.speed * speed + weights.cost * cost
        reasons = _reasons(card, constraints, fit, evidence, missing, confidence, quality)
        reasons[1:1] = _quality_notes(q, constraints.task, loss)
        if speed_note:
            reasons = [
                speed_note if r.startswith("binding constraint: memory") else r for r in reasons
            ]
            if speed_note not in reasons:
                reasons.insert(-1, speed_note)
        candidates.append(
            Candidate(
                id=card.id,
                score=round(score, 4),
                quant=fit.quant,
                fits=True,
                params_total=card.params.total,
                params_active=card.params.active_or_total,
                context_max=card.context.max,
                estimated_memory_bytes=fit.total_bytes,
                decode_tokens_per_second=fit.decode_tokens_per_second,
                decode_label=fit.labels.get("decode_tokens_per_second", "estimated"),
                quality=round(quality, 4),
                speed_score=round(speed, 4),
                cost_score=round(cost, 4),
                confidence=confidence,
                coverage=q.coverage,
                quality_range=(round(q.range[0], 4), round(q.range[1], 4)),
                quant_quality_loss=loss.quality_loss,
                evidence=evidence,
                missing_benchmarks=missing,
                reasons=reasons,
            )
        )
    candidates.sort(key=lambda cand: (-cand.score, cand.id))
    excluded.sort(key=lambda pair: (-pair[0], pair[1].id))
    return Recommendation(
        task=constraints.task,
        device=device.summary(),
        context=context,
        weights=weights,
        candidates=candidates[: constraints.top],
        excluded=[e for _, e in excluded],
        calibration=_calibration_line(constraints, device, calibration),
    )


def _calibration_line(
    c: Constraints, device: Device, calibration: Calibration | None
) -> str | None:
    cal = calibration_for(c.runtime, device, calibration)
    return cal.describe() if cal is not None else None


def _quality_notes(q: _Quality, task: str, loss: QuantLoss) -> list[str]:
    notes = [
        f"coverage: {q.coverage}; missing ones imputed at half the size prior "
        f"(evidence range {q.range[0]:.2f}-{q.range[1]:.2f})"
    ]
    if q.mismatch:
        notes.append(
            f"specialised for {q.mismatch}, not {task}: quality -{MISMATCH_PENALTY:g} "
            "(a narrow specialist answers other requests worse than its benchmarks suggest)"
        )
    if loss.basis == "measured":
        notes.append(
            f"quantization {loss.quant}: quality x {1 - loss.quality_loss:.4f} "
            f"(measured: {loss.source}; data {loss.data})"
        )
    elif loss.quality_loss > 0:
        notes.append(
            f"quantization {loss.quant}: quality x {1 - loss.quality_loss:.4f} "
            f"({loss.basis}: {loss.data})"
        )
    return notes


def _reasons(
    card: ModelCard,
    c: Constraints,
    fit: FitResult,
    evidence: list[Evidence],
    missing: list[str],
    confidence: str,
    quality: float,
) -> list[str]:
    reasons = []
    if evidence:
        shown = ", ".join(
            f"{e.benchmark} {e.value:g} ({e.protocol}; {e.source})"
            + ("" if e.verified else " [unverified]")
            for e in evidence[:4]
        )
        reasons.append(f"evidence for {c.task}: {shown}")
    else:
        reasons.append(
            f"no {c.task} benchmark in the catalog; ranked on a size prior (confidence low)"
        )
    spec = TASK_SPECIALIZATION.get(c.task, ())
    if any(s in card.specialization for s in spec):
        reasons.append(f"specialised for {c.task} ({', '.join(card.specialization)})")
    reasons.append(
        f"fits at {fit.quant}: estimated {fit.total_bytes / 2**30:.1f} GiB of "
        f"{(fit.usable_memory_bytes or 0) / 2**30:.1f} GiB usable at {fit.context:,} tokens "
        f"({fit.runtime})"
    )
    if fit.quant != _best_quant_name(c):
        reasons.append(
            f"binding constraint: memory; higher-precision formats do not fit, {fit.quant} is "
            "the best that does"
        )
    if fit.decode_tokens_per_second:
        calibrated = fit.labels.get("decode_tokens_per_second") == "estimated (calibrated)"
        reasons.append(
            f"estimated decode {fit.decode_tokens_per_second:.0f} tokens/s"
            + (" (calibrated on this machine)" if calibrated else "")
        )
    reasons.append(
        f"license {card.license.name}"
        + (" (permissive)" if card.license.permissive else "")
        + ("" if card.license.commercial_use else ", no commercial use")
    )
    if c.languages:
        reasons.append(f"languages {', '.join(c.languages)} listed")
    if missing and confidence != "high":
        reasons.append(f"confidence {confidence}: missing {', '.join(missing[:4])}")
    else:
        reasons.append(f"confidence {confidence}")
    del quality
    return reasons


def _best_quant_name(c: Constraints) -> str:
    order = _quant_order(c)
    return order[0] if order else ""
