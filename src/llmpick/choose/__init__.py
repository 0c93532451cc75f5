"""The main job: from constraints to a proven recommendation (``llmpick choose``).

The pipeline, one stage per step (each stage is also its own command)::

    constraints -> recommend (shortlist with fit and reasons)
                -> which candidates run here (bundled, llmpick.yaml, -m)
                -> evaluate on the data (scores with intervals, paired tests)
                -> bench (speed and memory here, beside the fit estimate)
                -> rank by the weights, verdict, Pareto fronts, cost -> report

    from llmpick.choose import ChooseOptions, choose
    result = choose(Context(), ChooseOptions(models=["smollm2-135m-instruct", "gemma-3-270m"]))
    result.verdict.winner, result.verdict.sentence

Everything measured goes to the SQLite store: generations through
:mod:`llmpick.evaluate`, benchmarks through :mod:`llmpick.bench` (keyed here by
the model's identity and the bench settings), so a re-run reuses all of it. A
candidate that fails to load or to generate is reported as failed with its
error; the others go on.

Modules: ``models`` (typed options and results), ``candidates`` (what runs here),
``measure`` (cached bench), ``ranking`` (weights, verdict, Pareto), ``pipeline``
(the stages in order).
"""

from __future__ import annotations

from llmpick.choose.models import (
    CandidateStatus,
    ChooseOptions,
    ChooseResult,
    RankedModel,
    Verdict,
)
from llmpick.choose.pipeline import check_options, choose
from llmpick.data import sample_data_path

__all__ = [
    "CandidateStatus",
    "ChooseOptions",
    "ChooseResult",
    "RankedModel",
    "Verdict",
    "check_options",
    "choose",
    "sample_data_path",
]
