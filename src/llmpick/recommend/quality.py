"""Quality for a task from sparse, uneven evidence: a one-factor model with a prior.

Cards report different benchmarks, and reporting fewer must not help a model. Every
figure that may rank (:func:`llmpick.recommend.evidence.ranking_scores`, the instruct
card's own: figures labelled as the base model's are shown but never rank an instruct
card) is explained by::

    value[model, benchmark] = offset[benchmark] + slope[benchmark] x q[model] + noise

fitted by alternating least squares. ``offset`` and ``slope`` absorb each benchmark's
difficulty and spread, so a model that reports only an easy benchmark gains nothing
from it, and ``q`` is on one scale for every model.

Each ``q`` is a posterior mean: its prior counts like ``1 / PRIOR_SD**2`` of evidence,
so a model with few figures stays near its prior and has a wide interval (posterior
sd ``1 / sqrt(prior precision + sum slope**2 / noise**2)``). The prior is what a model
of its size and generation scores: a least-squares fit of ``q`` on
``log10(effective params)`` (``sqrt(total x active)`` for an MoE) and the release year,
plus the shrunk mean residual of its family-and-version siblings; a model with no figure
at all is placed from its reported siblings instead (same family, version and narrow
specialization: interpolated on log size between the nearest two, or the nearest one
plus the size slope). A task's ``q`` is the
same fit on the task's benchmarks with the general ``q`` as prior, so a model with no
figure for the task keeps its general standing, with a wider interval.

Within one family, version and narrow specialization (coder, math...), a larger sibling is never
ranked below a smaller one (a monotone pass: the larger takes the smaller's ``q`` and
says so); makers size their lines so that this holds, and it keeps a sparsely reported
14B from losing to its 8B sibling for reporting less.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llmpick.recommend.evidence import ranking_scores

if TYPE_CHECKING:
    from llmpick.catalog import ModelCard
    from llmpick.catalog.schema import Benchmark

__all__ = [
    "PRIOR_SD",
    "QualityEstimate",
    "estimate_quality",
    "is_base_figure",
    "is_thinking_figure",
    "to_unit",
]

#: prior sd of q (in units of the model spread): one sd of prior counts like
#: a benchmark with slope = noise
PRIOR_SD = 0.6
#: prior sd of a task's q around the general q
TASK_PRIOR_SD = 0.5
#: floor on the residual noise, benchmark points
MIN_NOISE = 3.0
_ITERATIONS = 25
#: residual shrinkage of a family offset: it counts like this many extra members at 0
_FAMILY_SHRINK = 2.0

#: (current q per model, observations) -> prior q per model
PriorFn = Callable[[list[float], dict[int, dict[str, float]]], list[float]]


def is_base_figure(score: Benchmark) -> bool:
    """True for a figure the card labels as its base model's (shown, never ranked)."""
    variant = (score.protocol.variant or "").lower()
    return variant.startswith("base model") or "equals the base" in variant


def _ranked_figures(card: ModelCard, benchmark: str) -> list[Benchmark]:
    scores = ranking_scores(card, benchmark)
    if "base" in card.specialization:
        return scores
    return [s for s in scores if not is_base_figure(s)]


def to_unit(q: float) -> float:
    """Map q (model-spread units, 0 = catalog mean) to (0, 1) with a logistic."""
    return 1 / (1 + math.exp(-q))


@dataclass
class QualityEstimate:
    """A model's quality for a task: posterior mean and sd, and how it was obtained."""

    q: float
    sd: float
    prior: float
    reported: list[str]
    missing: list[str]
    figures: list[Benchmark] = field(default_factory=list)
    base_figures: list[Benchmark] = field(default_factory=list)
    raised_to: str | None = None

    @property
    def interval(self) -> tuple[float, float]:
        """The interval q +- one posterior sd, on the 0..1 scale."""
        return to_unit(self.q - self.sd), to_unit(self.q + self.sd)

    @property
    def confidence(self) -> str:
        """Confidence high / medium / low, from the posterior sd."""
        return "high" if self.sd < 0.3 else "medium" if self.sd < 0.45 else "low"


def _effective_params(card: ModelCard) -> float:
    total = card.params.total
    active = card.params.active or total
    return math.sqrt(total * active)


def _features(cards: Sequence[ModelCard]) -> list[tuple[float, float]]:
    years = [
        c.release_date.year + c.release_date.timetuple().tm_yday / 366
        for c in cards
        if c.release_date
    ]
    median_year = sorted(years)[len(years) // 2] if years else 2024.0
    out = []
    for c in cards:
        year = (
            c.release_date.year + c.release_date.timetuple().tm_yday / 366
            if c.release_date
            else median_year
        )
        out.append((math.log10(_effective_params(c) / 1e9), year - 2024.0))
    return out


def _lstsq3(rows: list[tuple[float, float, float]], ridge: float = 1e-3) -> tuple[float, ...]:
    """Solve y = b0 + b1 x1 + b2 x2 by the normal equations (3x3, ridge on b1 and b2)."""
    a = [[0.0] * 3 for _ in range(3)]
    v = [0.0] * 3
    for x1, x2, y in rows:
        x = (1.0, x1, x2)
        for i in range(3):
            v[i] += x[i] * y
            for j in range(3):
                a[i][j] += x[i] * x[j]
    a[1][1] += ridge
    a[2][2] += ridge
    for col in range(3):  # Gauss-Jordan with partial pivoting
        pivot = max(range(col, 3), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        v[col], v[pivot] = v[pivot], v[col]
        if abs(a[col][col]) < 1e-12:
            return (0.0, 0.0, 0.0)
        for r in range(3):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [a[r][k] - f * a[col][k] for k in range(3)]
                v[r] -= f * v[col]
    return tuple(v[i] / a[i][i] for i in range(3))


def is_thinking_figure(score: Benchmark) -> bool:
    """True for a figure measured with long reasoning on (thinking mode, reasoning high)."""
    variant = (score.protocol.variant or "").lower()
    return "thinking" in variant or "reasoning high" in variant


def _observations(
    cards: Sequence[ModelCard], benchmarks: Iterable[str], merge_thinking: bool
) -> dict[int, dict[str, float]]:
    """Per model, per benchmark key: the mean ranked figure.

    Unless ``merge_thinking``, a thinking-mode figure is its own benchmark
    (``aime25@thinking``): its offset absorbs what long reasoning adds, so a card that
    reports only thinking-mode figures is compared with other thinking-mode figures.
    """
    obs: dict[int, dict[str, float]] = {}
    for index, card in enumerate(cards):
        for name in benchmarks:
            keyed: dict[str, list[float]] = {}
            for f in _ranked_figures(card, name):
                thinking = is_thinking_figure(f) and not merge_thinking
                keyed.setdefault(name + "@thinking" if thinking else name, []).append(f.value)
            for key, values in keyed.items():
                obs.setdefault(index, {})[key] = sum(values) / len(values)
    return obs


def _fit(
    obs: dict[int, dict[str, float]],
    n: int,
    prior_of: PriorFn,
    prior_sd: float,
    start: list[float],
    renormalise: bool,
) -> tuple[list[float], list[float], list[float]]:
    """Alternating least squares; returns (q, sd, prior) per model."""
    q = list(start)
    prior = list(start)
    by_bench: dict[str, list[tuple[int, float]]] = {}
    for m, row in obs.items():
        for b, v in row.items():
            by_bench.setdefault(b, []).append((m, v))
    params: dict[str, tuple[float, float]] = {}
    noise = 6.0
    for _ in range(_ITERATIONS):
        slopes = []
        for b, pts in by_bench.items():
            if len(pts) >= 3:
                mq = sum(q[m] for m, _ in pts) / len(pts)
                mv = sum(v for _, v in pts) / len(pts)
                sxx = sum((q[m] - mq) ** 2 for m, _ in pts)
                sxy = sum((q[m] - mq) * (v - mv) for m, v in pts)
                slope = max(sxy / sxx if sxx > 1e-9 else 0.0, 2.0)
                params[b] = (mv - slope * mq, slope)
                slopes.append(slope)
        typical = sorted(slopes)[len(slopes) // 2] if slopes else 10.0
        for b, pts in by_bench.items():
            if len(pts) < 3:  # too few reporters to fit a slope: borrow the typical one
                params[b] = (sum(v - typical * q[m] for m, v in pts) / len(pts), typical)
        residuals = [
            v - params[b][0] - params[b][1] * q[m] for b, pts in by_bench.items() for m, v in pts
        ]
        if len(residuals) > 3:
            noise = max(math.sqrt(sum(r * r for r in residuals) / len(residuals)), MIN_NOISE)
        prior = prior_of(q, obs)
        precision0 = 1 / prior_sd**2
        new_q = []
        for m in range(n):
            num, den = precision0 * prior[m], precision0
            for b, v in obs.get(m, {}).items():
                a, s = params[b]
                num += s * (v - a) / noise**2
                den += s * s / noise**2
            new_q.append(num / den)
        if renormalise:
            mean = sum(new_q) / n
            spread = math.sqrt(sum((x - mean) ** 2 for x in new_q) / n) or 1.0
            new_q = [(x - mean) / spread for x in new_q]
        q = new_q
    sd = []
    for m in range(n):
        den = 1 / prior_sd**2 + sum(params[b][1] ** 2 / noise**2 for b in obs.get(m, {}))
        sd.append(1 / math.sqrt(den))
    return q, sd, prior


def _sibling_key(card: ModelCard) -> tuple[str, str, tuple[str, ...]]:
    narrow = tuple(sorted(set(card.specialization) & {"coder", "math", "translation", "base"}))
    return card.family, card.version, narrow


def _size_generation_prior(cards: Sequence[ModelCard]) -> PriorFn:
    feats = _features(cards)
    groups = [(c.family, c.version) for c in cards]
    siblings = [_sibling_key(c) for c in cards]

    def from_siblings(
        m: int, q: list[float], obs: dict[int, dict[str, float]], slope: float
    ) -> float | None:
        known = sorted((feats[j][0], q[j]) for j in obs if siblings[j] == siblings[m])
        if not known:
            return None
        x = feats[m][0]
        below = [k for k in known if k[0] <= x]
        above = [k for k in known if k[0] > x]
        if below and above:  # interpolate on log size between the nearest two
            (x0, q0), (x1, q1) = below[-1], above[0]
            return q0 + (q1 - q0) * (x - x0) / (x1 - x0) if x1 > x0 else q0
        x0, q0 = below[-1] if below else above[0]
        return q0 + slope * (x - x0)

    def prior_of(q: list[float], obs: dict[int, dict[str, float]]) -> list[float]:
        rows = [(feats[m][0], feats[m][1], q[m]) for m in obs if len(obs[m]) >= 2]
        b0, b1, b2 = _lstsq3(rows) if len(rows) >= 5 else (0.0, 1.0, 0.0)
        b1 = max(b1, 0.0)  # bigger is never worse a priori
        b2 = max(b2, 0.0)  # newer is never worse a priori
        base = [b0 + b1 * f[0] + b2 * f[1] for f in feats]
        sums: dict[tuple[str, str], list[float]] = {}
        for m in obs:
            sums.setdefault(groups[m], []).append(q[m] - base[m])
        offset = {g: sum(r) / (len(r) + _FAMILY_SHRINK) for g, r in sums.items()}
        out = []
        for m in range(len(cards)):
            sibling = None if m in obs else from_siblings(m, q, obs, b1)
            out.append(sibling if sibling is not None else base[m] + offset.get(groups[m], 0.0))
        return out

    return prior_of


def _monotone_siblings(cards: Sequence[ModelCard], estimates: list[QualityEstimate]) -> None:
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, c in enumerate(cards):
        groups.setdefault(_sibling_key(c), []).append(i)
    for members in groups.values():
        members.sort(key=lambda i: _effective_params(cards[i]))
        best = None
        for i in members:
            if best is not None and estimates[i].q < estimates[best].q:
                estimates[i].q = estimates[best].q
                estimates[i].raised_to = cards[best].id
            if best is None or estimates[i].q >= estimates[best].q:
                best = i


def estimate_quality(
    cards: Sequence[ModelCard],
    task_benchmarks: Sequence[str],
    general_benchmarks: Sequence[str],
    merge_thinking: bool = False,
) -> dict[str, QualityEstimate]:
    """Quality for a task of every card in ``cards`` (the whole catalog), by card id."""
    n = len(cards)
    general_obs = _observations(cards, general_benchmarks, merge_thinking=False)
    feats = _features(cards)
    mean_f = sum(f[0] for f in feats) / n
    start = [f[0] - mean_f for f in feats]
    q_gen, sd_gen, prior_gen = _fit(
        general_obs, n, _size_generation_prior(cards), PRIOR_SD, start, renormalise=True
    )
    task_obs = _observations(cards, task_benchmarks, merge_thinking)

    def task_prior(q: list[float], obs: dict[int, dict[str, float]]) -> list[float]:
        del q, obs
        return q_gen

    q_task, sd_task, _ = _fit(task_obs, n, task_prior, TASK_PRIOR_SD, q_gen, renormalise=False)
    estimates = []
    for m, card in enumerate(cards):
        keys = {k.split("@")[0] for k in task_obs.get(m, {})}
        reported = [b for b in task_benchmarks if b in keys]
        figures = [f for b in reported for f in _ranked_figures(card, b)]
        base = [s for b in task_benchmarks for s in card.scores(b) if is_base_figure(s)]
        # the task sd combines the general uncertainty (prior) and the task's own
        sd = math.sqrt(sd_task[m] ** 2 + (sd_gen[m] ** 2 if not reported else 0.0))
        estimates.append(
            QualityEstimate(
                q=q_task[m],
                sd=min(sd, 1.0),
                prior=prior_gen[m],
                reported=reported,
                missing=[b for b in task_benchmarks if b not in reported],
                figures=figures,
                base_figures=base if "base" not in card.specialization else [],
            )
        )
    _monotone_siblings(cards, estimates)
    return {card.id: est for card, est in zip(cards, estimates, strict=True)}
