"""Constraints -> hard filters -> quality-first ranking -> an explained shortlist.

Hard filters, in order (the first one a model fails is its exclusion reason): instruct
only (base models unless ``include_base``), license, input modality (``vision`` needs
image input), minimum context, languages, size, API price (a model with no known price
fails ``max_price``: unknown is not cheap), then *fits*: a format from its runtime's
ladder fits with headroom at the asked context x concurrency
(:mod:`llmpick.recommend.quant_choice`). Formats below 4 bits are tried only when no
model fits at 4 bits or more, and the candidates say so.

Ranking is quality first. Quality comes from :mod:`llmpick.recommend.quality` (one scale
for every model, shrunk toward a size-and-generation prior, so reporting less never
helps), mapped to 0..1 by a logistic, then:

- a narrow specialist (coder, math) ranked for another task loses
  :data:`MISMATCH_PENALTY`; a specialization that matches the task gains
  :data:`MATCH_BONUS` (in quality units before the logistic);
- times ``1 - quantization loss`` (:mod:`llmpick.fit.quant_loss`; 0 for a model run in
  its release format).

Speed is a floor, not a reward: the use case (interactive 8 tokens/s, code completion
20, batch none; :data:`llmpick.recommend.tasks.USE_CASE_FLOORS`) sets a usable decode
rate; a model below it is demoted below every model above it, and says so. Above the
floor speed earns little: ``0.5 + 0.5 x min(1, log2(rate / floor) / 3)``. Cost is the
memory headroom left, ``1 - total / budget``. The score is
``weights.quality x quality + weights.speed x speed + weights.cost x cost`` with
defaults 0.92 / 0.05 / 0.03: a clear quality gap always wins; within
:data:`TIE_MARGIN` of quality the cheaper, faster model goes first, and the reasons name
the models it is tied with.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llmpick.errors import UsageError
from llmpick.fit.calibration import Calibration, calibration_for
from llmpick.fit.quant_loss import LossLookup, QuantLoss, quality_loss
from llmpick.hardware import Device, detect_local, get_device
from llmpick.recommend.explain import quality_reasons, shortlist_reasons
from llmpick.recommend.models import (
    Candidate,
    Constraints,
    Evidence,
    Exclusion,
    Recommendation,
    Weights,
)
from llmpick.recommend.quality import QualityEstimate, estimate_quality, to_unit
from llmpick.recommend.quant_choice import QuantChoice, choose_quant
from llmpick.recommend.tasks import (
    GENERAL_BENCHMARKS,
    LANGUAGE_BENCHMARKS,
    TASK_BENCHMARKS,
    TASK_MODALITIES,
    TASK_SPECIALIZATION,
    USE_CASE_FLOORS,
    task_use_case,
)

if TYPE_CHECKING:
    from llmpick.catalog import Catalog, ModelCard
    from llmpick.catalog.schema import Benchmark

__all__ = ["MATCH_BONUS", "MISMATCH_PENALTY", "TIE_MARGIN", "recommend"]

#: a narrow specialization, and the tasks it suits; for any other task it costs quality
NARROW_SPECIALIZATIONS: dict[str, tuple[str, ...]] = {
    "coder": ("coding",),
    "math": ("math",),
    "translation": ("translation", "multilingual"),
    # a vision-language card without "general": its text standing is its base's at best
    "vision": ("vision",),
}
MISMATCH_PENALTY = 0.8
MATCH_BONUS = 0.3
#: asked context beyond the native window (YaRN and the like): the makers warn that
#: static extension can cost quality
EXTENSION_PENALTY = 0.3
#: quality (0..1) within which two models count as tied
TIE_MARGIN = 0.03


def _device(constraints: Constraints) -> Device:
    if constraints.device is None:
        return detect_local()
    return get_device(constraints.device)


def _first_failed_filter(card: ModelCard, c: Constraints, modalities: list[str]) -> str | None:
    if "base" in card.specialization and not c.include_base:
        return "base (pretrained) model; pass include_base to consider it"
    if c.license == "commercial" and not card.license.commercial_use:
        return f"license {card.license.name} does not allow commercial use"
    if c.license == "permissive" and not card.license.permissive:
        restrictions = "; ".join(card.license.restrictions[:1]) or "not permissive"
        return f"license {card.license.name} is not permissive ({restrictions})"
    lacking_modality = [m for m in modalities if m not in card.modalities]
    if lacking_modality:
        return f"does not take {', '.join(lacking_modality)} input"
    if c.min_context and card.context.max < c.min_context:
        return f"context {card.context.max:,} is below the required {c.min_context:,}"
    if c.languages:
        lacking = [lang for lang in c.languages if lang not in card.languages]
        if lacking:
            return f"does not list language(s) {', '.join(lacking)}"
    if c.max_params_b is not None and card.params.total > c.max_params_b * 1e9:
        return f"{card.params.total / 1e9:.1f}B parameters exceed the {c.max_params_b:g}B limit"
    if c.max_price is not None:
        if not card.prices:
            return "no known API price (--max-price needs one; unknown is not cheap)"
        cheapest = min(p.output_usd_per_mtok for p in card.prices)
        if cheapest > c.max_price:
            return f"cheapest API output price ${cheapest:g}/Mtok exceeds ${c.max_price:g}"
    return None


def _adjusted_q(
    card: ModelCard, task: str, est: QualityEstimate, context: int
) -> tuple[float, str | None]:
    mismatch = next(
        (
            s
            for s, suits in NARROW_SPECIALIZATIONS.items()
            if s in card.specialization
            and "general" not in card.specialization
            and task not in suits
        ),
        None,
    )
    bonus = (
        MATCH_BONUS
        if any(s in card.specialization for s in TASK_SPECIALIZATION.get(task, ()))
        else 0.0
    )
    if task == "chat":
        bonus = 0.0  # every instruct model chats; "chat" is no specialization
    extension = EXTENSION_PENALTY if context > card.context.native else 0.0
    return est.q + bonus - extension - (MISMATCH_PENALTY if mismatch else 0.0), mismatch


def _speed_score(rate: float | None, floor: float) -> float:
    if rate is None:
        return 0.5
    if floor <= 0:
        return min(1.0, rate / (rate + 30))
    if rate < floor:
        return 0.5 * rate / floor
    return 0.5 + 0.5 * min(1.0, math.log2(rate / floor) / 3)


def _choices(
    cards: list[ModelCard],
    c: Constraints,
    device: Device,
    context: int,
    floor: float,
    calibration: Calibration | None,
) -> tuple[dict[str, QuantChoice], bool]:
    """Each passing card's format; sub-4-bit only when nothing fits at 4 bits or more."""
    common = {
        "runtime": c.runtime,
        "device": device,
        "context": context,
        "concurrency": c.concurrency,
        "floor_tokens_per_second": floor,
        "quant": c.quant,
        "calibration": calibration,
    }
    out = {card.id: choose_quant(card, **common) for card in cards}  # type: ignore[arg-type]
    if any(ch.fit is not None for ch in out.values()) or c.quant:
        return out, False
    return {card.id: choose_quant(card, sub_4_bit=True, **common) for card in cards}, True  # type: ignore[arg-type]


def recommend(
    constraints: Constraints,
    catalog: Catalog | None = None,
    calibration: Calibration | None = None,
    losses: LossLookup | None = None,
) -> Recommendation:
    """Filter the catalog by ``constraints``, rank what is left quality first, and explain it.

    Every candidate fits the device (``fits`` is True) with the quantization shown.
    Speeds on a device of this machine are calibrated (``calibration``, else the one
    ``bench --calibrate`` stored). A quantization's quality loss is the one
    ``llmpick quant`` measured on that model when ``losses`` has it, else the sourced
    default per format. Raises HardwareError/QuantizationError/UsageError for bad input.
    """
    c = constraints
    if c.task not in TASK_BENCHMARKS:
        raise UsageError(f"unknown task {c.task!r}", "use one of: " + ", ".join(TASK_BENCHMARKS))
    if catalog is None:
        from llmpick.catalog import load_catalog

        catalog = load_catalog()
    device = _device(c)
    context = c.context or c.min_context or 4096
    use_case = c.use_case or task_use_case(c.task)
    floor = USE_CASE_FLOORS[use_case]
    modalities = sorted(set(c.modalities) | set(TASK_MODALITIES.get(c.task, ())))
    cards = list(catalog)
    benchmarks = list(TASK_BENCHMARKS[c.task])
    for lang in c.languages:
        benchmarks += [b for b in LANGUAGE_BENCHMARKS.get(lang, ()) if b not in benchmarks]
    merge = c.task in ("math", "reasoning", "general")  # long reasoning is what these tasks ask for
    estimates = estimate_quality(cards, benchmarks, GENERAL_BENCHMARKS, merge_thinking=merge)
    weights = c.weights.normalised()

    excluded: list[tuple[float, Exclusion]] = []
    passing = []
    for card in cards:
        failed = _first_failed_filter(card, c, modalities)
        if failed is None:
            passing.append(card)
        else:
            excluded.append((estimates[card.id].q, Exclusion(id=card.id, reason=failed)))
    choices, sub4_allowed = _choices(passing, c, device, context, floor, calibration)

    candidates: list[Candidate] = []
    for card in passing:
        est, choice = estimates[card.id], choices[card.id]
        if choice.fit is None:
            excluded.append((est.q, _no_fit(card, choice, device, context, c.concurrency)))
            continue
        candidates.append(_candidate(card, c, est, choice, weights, floor, losses))
    candidates.sort(key=lambda cand: (cand.below_speed_floor, -cand.score, cand.id))
    shortlist = candidates[: c.top]
    shortlist_reasons(shortlist, candidates, TIE_MARGIN, sub4_allowed)
    excluded.sort(key=lambda pair: (-pair[0], pair[1].id))
    return Recommendation(
        task=c.task,
        device=device.summary(),
        context=context,
        weights=weights,
        candidates=shortlist,
        excluded=[e for _, e in excluded],
        calibration=_calibration_line(c, device, calibration),
    )


def _no_fit(
    card: ModelCard, choice: QuantChoice, device: Device, context: int, concurrency: int
) -> Exclusion:
    smallest = choice.smallest
    tried = smallest.quant if smallest else "any quantization"
    need = f" (needs {smallest.total_bytes / 2**30:.1f} GiB)" if smallest else ""
    seqs = f" x {concurrency} sequences" if concurrency > 1 else ""
    return Exclusion(
        id=card.id,
        reason=f"does not fit {device.name} at {context:,} tokens{seqs} even at {tried}{need}; "
        f"usable {device.usable_memory_bytes / 2**30:.1f} GiB (4-bit or more)",
    )


def _candidate(
    card: ModelCard,
    c: Constraints,
    est: QualityEstimate,
    choice: QuantChoice,
    weights: Weights,
    floor: float,
    losses: LossLookup | None,
) -> Candidate:
    fit = choice.fit
    assert fit is not None
    q, mismatch = _adjusted_q(card, c.task, est, fit.context)
    if choice.native:
        loss = QuantLoss(
            quant=fit.quant,
            quality_loss=0.0,
            basis="sourced default",
            source=card.native_quant.source if card.native_quant else "",
            data="the maker's release format: its benchmarks were measured on these weights",
        )
    else:
        measured = losses(card.id, fit.quant) if losses is not None else None
        loss = quality_loss(card.id, fit.quant, measured)
    quality = to_unit(q) * (1 - loss.quality_loss)
    speed = _speed_score(fit.decode_tokens_per_second, floor)
    budget = fit.usable_memory_bytes or 1
    cost = max(0.0, 1 - fit.total_bytes / budget)
    w = weights
    score = w.quality * quality + w.speed * speed + w.cost * cost
    binding = (
        "speed"
        if choice.below_floor or "binding constraint: speed" in choice.why
        else "memory"
        if "binding constraint: memory" in choice.why or choice.sub_4_bit
        else "none"
    )
    evidence = [_evidence(f, "") for f in est.figures] + [
        _evidence(f, "base model's figure (shown, not ranked)") for f in est.base_figures
    ]
    low, high = est.interval
    return Candidate(
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
        confidence=est.confidence,
        coverage=f"{len(est.reported)} of {len(est.reported) + len(est.missing)} "
        f"{c.task} benchmarks reported",
        quality_range=(round(low, 4), round(high, 4)),
        quant_quality_loss=loss.quality_loss,
        evidence=evidence,
        missing_benchmarks=est.missing,
        reasons=quality_reasons(card, c, est, choice, loss, mismatch, floor),
        binding_constraint=binding,
        quant_reason=choice.why,
        below_speed_floor=choice.below_floor,
    )


def _evidence(s: Benchmark, label: str) -> Evidence:
    return Evidence(
        benchmark=s.name,
        value=s.value,
        protocol=s.protocol.describe(),
        source=s.source,
        origin=s.origin,
        verified=s.verified,
        label=label,
    )


def _calibration_line(
    c: Constraints, device: Device, calibration: Calibration | None
) -> str | None:
    cal = calibration_for(c.runtime, device, calibration)
    return cal.describe() if cal is not None else None
