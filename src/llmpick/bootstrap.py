"""The seeded percentile bootstrap behind every 95% interval llmpick prints.

One implementation for the score means of ``eval`` (:mod:`llmpick.evaluate.stats`),
the latency means of ``bench`` (:mod:`llmpick.bench.metrics`) and the
Bradley–Terry strengths of pairwise judging and blind votes
(:mod:`llmpick.evaluate.scorers.pairwise`). It is ``scipy.stats.bootstrap``
with ``method="percentile"``: rows (the first axis of the sample) are drawn
with replacement ``n_boot`` times from ``numpy.random.default_rng(seed)``, in
batches of 256 resamples to bound memory, so the same sample and seed always
give the same interval.

    from llmpick.bootstrap import percentile_bootstrap
    low, high, distribution = percentile_bootstrap([0.2, 0.9, 0.4], n_boot=2000, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as scipy_stats

__all__ = ["BootstrapResult", "percentile_bootstrap"]

#: resamples drawn at once (bounds memory at BATCH x rows)
BATCH = 256
CONFIDENCE = 0.95


class BootstrapResult(NamedTuple):
    """The 95% percentile interval and the ``n_boot`` resampled statistics it comes from.

    ``low`` and ``high`` have the statistic's shape (a float for a mean);
    ``distribution`` has one more, last, axis of length ``n_boot``.
    """

    low: Any
    high: Any
    distribution: np.ndarray


def percentile_bootstrap(
    sample: Any,
    statistic: Callable[..., Any] = np.mean,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> BootstrapResult:
    """Bootstrap ``statistic`` over the rows of ``sample`` (at least two rows).

    ``statistic(resamples, axis=-1)`` must reduce the last axis, which holds
    the rows of each resample (scipy moves the sample's first axis there).
    A sample with a NaN or infinity gives NaN bounds, as a percentile of such
    a distribution would.
    """
    data = np.asarray(sample, dtype=float)
    if not np.isfinite(data).all():
        shape = np.shape(statistic(np.moveaxis(data, 0, -1), axis=-1))
        nan = np.full(shape, np.nan)
        low = float(nan) if nan.ndim == 0 else nan
        return BootstrapResult(low, low, np.full((*shape, n_boot), np.nan))
    result = scipy_stats.bootstrap(
        (data,),
        statistic,
        n_resamples=n_boot,
        batch=BATCH,
        vectorized=True,
        axis=0,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    if np.ndim(low) == 0:
        low, high = float(low), float(high)
    return BootstrapResult(low, high, result.bootstrap_distribution)
