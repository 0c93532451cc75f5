"""The one seeded percentile bootstrap behind eval, bench and pairwise intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmpick.bootstrap import percentile_bootstrap


def test_resamples_rows_from_the_seeded_generator() -> None:
    values = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.2, 0.65])
    low, high, distribution = percentile_bootstrap(values, n_boot=600, seed=3)
    # the same draws by hand: n_boot rows of indices, in batches of 256
    rng = np.random.default_rng(3)
    by_hand = np.concatenate(
        [values[rng.integers(0, 7, (size, 7))].mean(axis=1) for size in (256, 256, 88)]
    )
    assert np.array_equal(distribution, by_hand)
    assert (low, high) == pytest.approx(tuple(np.percentile(by_hand, [2.5, 97.5])))
    assert percentile_bootstrap(values, n_boot=600, seed=3)[:2] == (low, high)


def test_vector_statistic_and_non_finite_sample() -> None:
    rows = np.arange(12, dtype=float).reshape(6, 2)  # 6 rows of 2 columns
    low, high, distribution = percentile_bootstrap(rows, n_boot=50, seed=0)
    assert distribution.shape == (2, 50)
    assert np.all(low <= rows.mean(axis=0)) and np.all(rows.mean(axis=0) <= high)
    nan_low, nan_high, _ = percentile_bootstrap([1.0, math.nan], n_boot=10)
    assert math.isnan(nan_low) and math.isnan(nan_high)
