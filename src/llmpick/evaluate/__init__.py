"""Evaluate models on your own data: datasets, the run matrix, scores and statistics.

The library API used by ``llmpick eval`` and by the ``choose`` stage::

    from llmpick.context import Context
    from llmpick.evaluate import RunOptions, load_dataset, run_eval

    result = run_eval(
        Context(),
        load_dataset("questions.csv"),
        ["smollm2-135m-instruct", "gemma-3-270m"],
        scorers=["contains"],
        params=SamplingParams(max_tokens=32, seed=0),
        db_path="llmpick.db",
        options=RunOptions(repeats=1),
    )
    result.models["gemma-3-270m"].mean, result.comparisons[0].sentence
"""

from llmpick.evaluate.dataset import ColumnMapping, Dataset, Row, load_dataset
from llmpick.evaluate.rescore import rescore_run
from llmpick.evaluate.results import (
    CategorySummary,
    ComparisonSummary,
    EvalResult,
    LatencySummary,
    ModelSummary,
    ScoreSummary,
    cell_rows,
    side_by_side,
    summarize,
)
from llmpick.evaluate.runner import ModelPrice, RunOptions, arun_eval, run_eval

__all__ = [
    "CategorySummary",
    "ColumnMapping",
    "ComparisonSummary",
    "Dataset",
    "EvalResult",
    "LatencySummary",
    "ModelPrice",
    "ModelSummary",
    "Row",
    "RunOptions",
    "ScoreSummary",
    "arun_eval",
    "cell_rows",
    "load_dataset",
    "rescore_run",
    "run_eval",
    "side_by_side",
    "summarize",
]
