"""Rank evaluated candidates under the user's weights and state the verdict."""

from __future__ import annotations

from typing import Any

from llmpick.choose.models import SPEED_HALF_POINT_TPS, RankedModel, Verdict
from llmpick.cost import CostRow
from llmpick.recommend import Weights


def _pareto(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names not dominated: no other point has quality >= and cost <= with one strict."""
    front = []
    for name, (quality, cost) in points.items():
        dominated = any(
            q >= quality and c <= cost and (q > quality or c < cost)
            for other, (q, c) in points.items()
            if other != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: -points[n][0])


def _rank(
    evaluation: Any, performance: dict[str, dict[str, Any]], cost: dict[str, CostRow], w: Weights
) -> list[RankedModel]:
    weights = w.normalised()
    costs = [c.usd_per_mtok for c in cost.values() if c.usd_per_mtok]
    cheapest = min(costs) if costs else None
    ranked = []
    for name, summary in evaluation.models.items():
        if summary.mean is None:
            continue
        perf = performance.get(name, {})
        tps = (perf.get("measured") or {}).get("output_tokens_per_second")
        row = cost.get(name)
        usd = row.usd_per_mtok if row else None
        speed = tps / (tps + SPEED_HALF_POINT_TPS) if tps else 0.0
        cost_score = cheapest / usd if usd and cheapest else 0.0
        ranked.append(
            RankedModel(
                model=name,
                rank=0,
                quality=summary.mean,
                quality_ci95=summary.ci95,
                n=summary.n,
                output_tokens_per_second=tps,
                speed_kind="measured" if tps else None,
                latency_p50_s=summary.latency_s.p50,
                usd_per_mtok=usd,
                quality_score=summary.mean,
                speed_score=round(speed, 4),
                cost_score=round(cost_score, 4),
                weighted_score=round(
                    weights.quality * summary.mean
                    + weights.speed * speed
                    + weights.cost * cost_score,
                    4,
                ),
            )
        )
    ranked.sort(key=lambda r: (-r.weighted_score, -(r.quality or 0), r.model))
    for index, item in enumerate(ranked, start=1):
        item.rank = index
    return ranked


def _verdict(
    ranked: list[RankedModel], evaluation: Any, row_scores: dict[str, dict[str, float]]
) -> Verdict:
    from llmpick.evaluate.stats import prompts_needed

    if not ranked:
        return Verdict(status="none", sentence="no candidate produced scores; see the failures")
    top = ranked[0]
    if len(ranked) == 1:
        return Verdict(
            status="single",
            leader=top.model,
            sentence=f"only {top.model} produced scores here, so there is nothing to compare "
            "it with; add candidates with -m or llmpick.yaml",
        )
    by_pair = {frozenset((c.a, c.b)): c for c in evaluation.comparisons}
    tied: list[str] = []
    better_elsewhere: list[str] = []
    needed: dict[str, int | None] = {}
    sentences = []
    for other in ranked[1:]:
        comp = by_pair.get(frozenset((top.model, other.model)))
        if comp is None:
            tied.append(other.model)
            continue
        sentences.append(comp.sentence)
        top_wins = comp.wins_a if comp.a == top.model else comp.wins_b
        other_wins = comp.wins_b if comp.a == top.model else comp.wins_a
        if comp.significant and top_wins > other_wins:
            continue
        if comp.significant:
            better_elsewhere.append(other.model)
        else:
            tied.append(other.model)
            needed[other.model] = prompts_needed(
                row_scores.get(top.model, {}), row_scores.get(other.model, {})
            )
    if not tied and not better_elsewhere:
        return Verdict(
            status="winner",
            winner=top.model,
            leader=top.model,
            sentence=f"{top.model} wins: highest weighted score ({top.weighted_score:.3f}) and "
            "better quality than every other candidate in paired comparisons: "
            + "; ".join(sentences),
            comparisons=sentences,
        )
    return _undecided(top, tied, better_elsewhere, needed, sentences)


def _undecided(
    top: RankedModel,
    tied: list[str],
    better_elsewhere: list[str],
    needed: dict[str, int | None],
    sentences: list[str],
) -> Verdict:
    """The verdict when the leader is not separated from every other candidate."""
    if better_elsewhere:
        return Verdict(
            status="trade-off",
            leader=top.model,
            sentence=f"{top.model} ranks first by your weights ({top.weighted_score:.3f}) on "
            f"speed and cost, but {', '.join(better_elsewhere)} scored better on quality "
            "with a significant difference: choose by what matters more to you",
            tied=tied,
            prompts_needed=needed,
            comparisons=sentences,
        )
    more = [
        f"{m}: no difference observed"
        if n is None
        else (f"{m}: about {n} more prompts" if n else f"{m}: a few more prompts")
        for m, n in needed.items()
    ]
    return Verdict(
        status="tied",
        leader=top.model,
        sentence=f"no winner yet: {top.model} leads on the weighted score "
        f"({top.weighted_score:.3f}) but its quality is not distinguishable from "
        f"{', '.join(tied)}" + (f" (roughly, to decide: {'; '.join(more)})" if more else ""),
        tied=[top.model, *tied],
        prompts_needed=needed,
        comparisons=sentences,
    )
