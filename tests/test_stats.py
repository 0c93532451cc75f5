"""Statistics: hand-computed values, cross-checked with scipy where it has the test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from llmpick.evaluate.stats import (
    compare_pair,
    format_p,
    mcnemar,
    mean_ci,
    paired_bootstrap,
    prompts_needed,
    sign_test,
)


def test_mean_ci_small_cases() -> None:
    empty = mean_ci([])
    assert all(math.isnan(x) for x in empty)
    one = mean_ci([0.7])
    assert one.mean == 0.7 and math.isnan(one.low) and math.isnan(one.high)
    same = mean_ci([1.0, 1.0, 1.0])
    assert same == (1.0, 1.0, 1.0)
    mean, low, high = mean_ci([0.0, 1.0])  # unpacks like a tuple
    assert mean == 0.5 and 0.0 <= low <= 0.5 <= high <= 1.0


def test_mean_ci_matches_the_normal_interval_for_a_large_sample() -> None:
    values = [1.0] * 60 + [0.0] * 40  # p = 0.6, n = 100: normal CI 0.6 ± 1.96 * 0.049
    result = mean_ci(values, n_boot=4000, seed=1)
    assert result.mean == pytest.approx(0.6)
    half = 1.96 * math.sqrt(0.6 * 0.4 / 100)
    assert result.low == pytest.approx(0.6 - half, abs=0.02)
    assert result.high == pytest.approx(0.6 + half, abs=0.02)
    assert mean_ci(values, n_boot=4000, seed=1) == result  # seeded: reproducible


def test_mcnemar_exact_by_hand() -> None:
    # 8 discordant pairs, 7 favour a: p = 2 * (C(8,7) + C(8,8)) / 2^8 = 18/256
    a = [True] * 7 + [False] + [True] * 5 + [False] * 3
    b = [False] * 7 + [True] + [True] * 5 + [False] * 3
    assert mcnemar(a, b) == pytest.approx(18 / 256)
    assert mcnemar([True, False], [True, False]) == 1.0  # no discordant pairs
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_sign_test_by_hand_and_against_scipy() -> None:
    a = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    b = [0.1, 0.2, 0.3, 0.6, 0.4, 0.5]  # 4 wins, 1 loss, 1 tie
    expected = 2 * (5 + 1) / 32  # P(X >= 4) * 2 for Binomial(5, 1/2)
    assert sign_test(a, b) == pytest.approx(expected)
    assert sign_test(a, b) == pytest.approx(scipy_stats.binomtest(4, 5).pvalue)


def test_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    b = rng.random(80)
    a = b + 0.2 + rng.normal(0, 0.05, 80)
    result = paired_bootstrap(list(a), list(b), n_boot=2000, seed=0)
    assert result.mean_diff == pytest.approx(float(np.mean(a - b)))
    assert result.low < result.mean_diff < result.high
    assert result.low > 0.15 and result.p_value == 0.0
    null = paired_bootstrap([0.1, 0.9, 0.5, 0.5], [0.9, 0.1, 0.5, 0.5])
    assert null.mean_diff == 0.0 and null.p_value == 1.0
    constant = paired_bootstrap([1.0, 1.0], [0.5, 0.5])
    assert constant == (0.5, 0.5, 0.5, 0.0)
    assert math.isnan(paired_bootstrap([], []).mean_diff)


def test_compare_pair_pass_fail_uses_mcnemar() -> None:
    a = {f"r{i}": 1.0 for i in range(50)}
    b = {f"r{i}": 0.0 if i < 38 else 1.0 for i in range(50)}
    result = compare_pair(a, b, "qwen", "llama")
    assert result.test == "mcnemar"
    assert (result.n, result.wins_a, result.wins_b, result.ties) == (50, 38, 0, 12)
    assert result.p_value == pytest.approx(2 * 0.5**38)
    assert result.significant
    assert result.sentence == "qwen beats llama on 38 of 50 prompts, p < 0.001"
    assert result.mean_diff == pytest.approx(38 / 50)


def test_compare_pair_not_distinguishable() -> None:
    a = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    b = [0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    result = compare_pair(a, b)
    # 3 rows favour A, 1 favours B: p = 2 * (C(4,3) + C(4,4)) / 16 = 0.625
    assert result.p_value == pytest.approx(0.625)
    assert not result.significant
    assert result.sentence == "A and B are not distinguishable with n = 12 (p = 0.62)"


def test_compare_pair_continuous_uses_the_sign_test_and_names_the_winner() -> None:
    a = {f"r{i}": 0.2 for i in range(10)}
    b = {f"r{i}": 0.7 for i in range(10)}
    b["only-b"] = 1.0  # unshared rows do not count
    result = compare_pair(a, b, "small", "big")
    assert result.test == "sign"
    assert result.n == 10 and result.wins_b == 10
    assert result.p_value == pytest.approx(2 * 0.5**10)
    assert result.sentence == "big beats small on 10 of 10 prompts, p = 0.002"
    assert result.ci95 == pytest.approx((-0.5, -0.5))


def test_compare_pair_with_no_shared_rows() -> None:
    result = compare_pair({"a": 1.0}, {"b": 1.0})
    assert result.n == 0 and result.test == "none" and not result.significant


def test_format_p() -> None:
    assert format_p(0.004) == "p = 0.004"
    assert format_p(0.3912) == "p = 0.39"
    assert format_p(0.0004) == "p < 0.001"
    assert format_p(1.0) == "p = 1"


def test_prompts_needed_by_hand() -> None:
    # diffs 0.1, 0.1, 0, 0: mean 0.05, sd sqrt(4 * 0.05^2 / 3) = 0.0577 (ddof=1)
    # n = ((1.96 + 0.8416) * 0.0577 / 0.05)^2 = 10.47 -> 11 in all, 7 more
    a = [0.6, 0.6, 0.5, 0.5]
    b = [0.5] * 4
    diffs = np.asarray(a) - np.asarray(b)
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    assert math.ceil((z * diffs.std(ddof=1) / 0.05) ** 2) == 11
    assert prompts_needed(a, b) == 7
    assert prompts_needed([0.6] * 10 + [0.5] * 10, [0.5] * 20) == 0  # 20 already suffice


def test_prompts_needed_edges() -> None:
    assert prompts_needed([0.5, 0.5], [0.5, 0.5]) is None  # no difference: never separable
    assert prompts_needed([1.0], [0.0]) is None  # n < 2
    assert prompts_needed([1.0, 1.0], [0.0, 0.0]) == 4  # all wins still need 6 prompts
    wide = [1.0, 0.0] * 10 + [1.0] * 2
    other = [0.0, 1.0] * 10 + [0.0] * 2  # mean diff 2/22 with sd ~1: hundreds more
    needed = prompts_needed(wide, other)
    assert needed is not None and needed > 500
