"""Statistics for evaluation runs: intervals, paired tests, plain-language comparisons.

- :func:`mean_ci`: mean with a 95% percentile-bootstrap interval
  (:mod:`llmpick.bootstrap`, shared with bench and pairwise judging).
- :func:`mcnemar`: exact McNemar test for paired pass/fail outcomes (a binomial
  test on the discordant pairs; McNemar 1947, exact form per Fagerland et al.
  2013, BMC Med. Res. Methodol. 13:91).
- :func:`sign_test` and :func:`paired_bootstrap` for paired continuous scores.
- :func:`compare_pair`: picks the test, counts wins, writes the sentence.
- :func:`prompts_needed`: how many more prompts would likely separate two models.

Pairing is by row: both models must have a score for the same prompt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel
from scipy import stats as scipy_stats

from llmpick.bootstrap import percentile_bootstrap

__all__ = [
    "Comparison",
    "MeanCI",
    "PairedBootstrap",
    "compare_pair",
    "format_p",
    "mcnemar",
    "mean_ci",
    "paired_bootstrap",
    "prompts_needed",
    "sign_test",
]

Scores = Mapping[str, float] | Sequence[float]


class MeanCI(NamedTuple):
    """A mean and its 95% interval (NaN where it cannot be computed)."""

    mean: float
    low: float
    high: float


class PairedBootstrap(NamedTuple):
    """Mean of a - b, its 95% bootstrap interval and a two-sided bootstrap p-value."""

    mean_diff: float
    low: float
    high: float
    p_value: float


def mean_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> MeanCI:
    """Mean and 95% percentile-bootstrap interval of ``values``.

    n = 0 gives all NaN; n = 1 gives the value with a NaN interval (one value
    says nothing about spread). Seeded: the same input gives the same interval.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return MeanCI(math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if data.size == 1:
        return MeanCI(mean, math.nan, math.nan)
    if np.all(data == data[0]):
        return MeanCI(mean, mean, mean)
    low, high, _ = percentile_bootstrap(data, n_boot=n_boot, seed=seed)
    return MeanCI(mean, low, high)


def mcnemar(a_pass: Sequence[bool], b_pass: Sequence[bool]) -> float:
    """Exact McNemar p-value (two-sided) for paired pass/fail outcomes.

    Only discordant pairs count: under the null each is equally likely to
    favour a or b, so their split is Binomial(n_discordant, 1/2).
    """
    if len(a_pass) != len(b_pass):
        raise ValueError("a_pass and b_pass must pair up (same length)")
    only_a = sum(1 for x, y in zip(a_pass, b_pass, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a_pass, b_pass, strict=True) if y and not x)
    return _binomial_p(only_a, only_a + only_b)


def sign_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided sign-test p-value for paired scores (ties dropped)."""
    if len(a) != len(b):
        raise ValueError("a and b must pair up (same length)")
    wins = sum(1 for x, y in zip(a, b, strict=True) if x > y)
    losses = sum(1 for x, y in zip(a, b, strict=True) if x < y)
    return _binomial_p(wins, wins + losses)


def _binomial_p(successes: int, trials: int) -> float:
    if trials == 0:
        return 1.0
    return float(scipy_stats.binomtest(successes, trials, 0.5).pvalue)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0
) -> PairedBootstrap:
    """Bootstrap over paired rows of the mean difference a - b.

    The p-value is twice the smaller share of resampled means on either side of
    zero (a percentile-bootstrap test; coarse below ~1/n_boot).
    """
    if len(a) != len(b):
        raise ValueError("a and b must pair up (same length)")
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diffs.size == 0:
        return PairedBootstrap(math.nan, math.nan, math.nan, 1.0)
    mean = float(diffs.mean())
    if diffs.size == 1 or np.all(diffs == diffs[0]):
        degenerate = diffs.size == 1
        p = 1.0 if mean == 0 or degenerate else 0.0
        edge = math.nan if degenerate else mean
        return PairedBootstrap(mean, edge, edge, p)
    low, high, means = percentile_bootstrap(diffs, n_boot=n_boot, seed=seed)
    p = min(1.0, 2.0 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    return PairedBootstrap(mean, low, high, p)


class Comparison(BaseModel):
    """Two models compared on the rows both were scored on."""

    a: str
    b: str
    n: int
    wins_a: int
    wins_b: int
    ties: int
    p_value: float
    test: str  # "mcnemar" (pass/fail), "sign" (scores) or "none" (no rows)
    mean_diff: float | None  # mean of a - b
    ci95: tuple[float, float] | None  # bootstrap interval of mean_diff
    significant: bool
    sentence: str


def format_p(p: float) -> str:
    """``p = 0.004``, ``p = 0.39``, or ``p < 0.001``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _paired(a_scores: Scores, b_scores: Scores) -> tuple[list[float], list[float]]:
    if isinstance(a_scores, Mapping) and isinstance(b_scores, Mapping):
        shared = [
            k
            for k in a_scores
            if k in b_scores and a_scores[k] is not None and b_scores[k] is not None
        ]
        return [float(a_scores[k]) for k in shared], [float(b_scores[k]) for k in shared]
    if isinstance(a_scores, Mapping) or isinstance(b_scores, Mapping):
        raise TypeError("give both scores as row-id mappings, or both as aligned sequences")
    if len(a_scores) != len(b_scores):
        raise ValueError("score lists must pair up (same length)")
    return [float(x) for x in a_scores], [float(y) for y in b_scores]


def compare_pair(
    a_scores: Scores,
    b_scores: Scores,
    a: str = "A",
    b: str = "B",
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare two models row by row: McNemar when every score is 0 or 1, else a sign test.

    ``a_scores``/``b_scores``: row id -> score (only shared rows count), or two
    aligned lists. The sentence reads "A beats B on 38 of 50 prompts, p = 0.004"
    or "A and B are not distinguishable with n = 12 (p = 0.39)".
    """
    xs, ys = _paired(a_scores, b_scores)
    n = len(xs)
    wins_a = sum(1 for x, y in zip(xs, ys, strict=True) if x > y)
    wins_b = sum(1 for x, y in zip(xs, ys, strict=True) if y > x)
    if n == 0:
        return Comparison(
            a=a, b=b, n=0, wins_a=0, wins_b=0, ties=0, p_value=1.0, test="none",
            mean_diff=None, ci95=None, significant=False,
            sentence=f"{a} and {b} share no scored prompts",
        )  # fmt: skip
    binary = all(v in (0.0, 1.0) for v in (*xs, *ys))
    test = "mcnemar" if binary else "sign"
    p = mcnemar([x == 1.0 for x in xs], [y == 1.0 for y in ys]) if binary else sign_test(xs, ys)
    boot = paired_bootstrap(xs, ys, n_boot=n_boot, seed=seed)
    ci = None if math.isnan(boot.low) else (boot.low, boot.high)
    significant = p < alpha and wins_a != wins_b
    if significant:
        winner, loser, wins = (a, b, wins_a) if wins_a > wins_b else (b, a, wins_b)
        sentence = f"{winner} beats {loser} on {wins} of {n} prompts, {format_p(p)}"
    else:
        sentence = f"{a} and {b} are not distinguishable with n = {n} ({format_p(p)})"
    return Comparison(
        a=a, b=b, n=n, wins_a=wins_a, wins_b=wins_b, ties=n - wins_a - wins_b, p_value=p,
        test=test, mean_diff=boot.mean_diff, ci95=ci, significant=significant, sentence=sentence,
    )  # fmt: skip


def prompts_needed(
    a_scores: Scores, b_scores: Scores, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Roughly how many more paired prompts would separate a and b at the observed difference.

    Normal approximation for a paired mean difference:
    ``n = ((z_{1-alpha/2} + z_power) * sd / mean)^2``, with ``sd`` and ``mean``
    those of the per-row differences so far, and never fewer prompts than an
    all-one-way sign test needs to reach ``alpha``. Returns 0 when the current
    rows already suffice, None when no difference is observed (no number of
    prompts would separate them at a difference of zero) or n < 2. An estimate.
    """
    xs, ys = _paired(a_scores, b_scores)
    n = len(xs)
    if n < 2:
        return None
    diffs = np.asarray(xs) - np.asarray(ys)
    mean = float(diffs.mean())
    if mean == 0.0:
        return None
    sd = float(diffs.std(ddof=1))
    z = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power)
    total = math.ceil((z * sd / abs(mean)) ** 2)
    # smallest k with 2 * 0.5**k < alpha: fewer prompts cannot be significant at all
    floor = math.ceil(math.log2(2 / alpha) + 1e-12)
    return max(0, max(total, floor) - n)
