"""Recompute a run's scores from what the store holds (``llmpick rescore``).

No model runs again: the rows and outputs come from the store. The scorers are
the run's own (their names and arguments were stored) or new ones; judge
generations are cached, so rescoring with the same judge costs nothing new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from llmpick.backends.base import Message
from llmpick.backends.pool import ModelPool
from llmpick.context import Context
from llmpick.evaluate.concurrency import first_error
from llmpick.evaluate.dataset import Dataset, Row
from llmpick.evaluate.results import EvalResult, summarize
from llmpick.evaluate.scorers.base import ScorerSpec
from llmpick.evaluate.scoring import CachedJudge, build_scorers, pairwise_spec, parse_scorers
from llmpick.evaluate.scoring_pass import ScoringPass, pairwise_summary
from llmpick.store import DEFAULT_DB, Store, open_store

__all__ = ["dataset_of_run", "rescore_run"]


def dataset_of_run(store: Store, run_id: str) -> Dataset:
    """Rebuild the run's rows, as stored, as a :class:`Dataset`."""
    run = store.get_run(run_id)
    rows = [
        Row(
            id=r.row_id,
            index=r.row_index,
            data=r.data,
            messages=[Message.model_validate(m) for m in r.messages],
            expected=r.expected,
            category=r.category,
        )
        for r in store.get_rows(run.id)
    ]
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row.data if k not in columns)
    return Dataset(name=run.dataset, source=run.dataset, columns=columns, rows=rows)


def rescore_run(
    context: Context,
    run_id: str,
    scorers: Sequence[str | ScorerSpec] | None = None,
    judge: str | None = None,
    db_path: Path | str = DEFAULT_DB,
    score_workers: int = 2,
    on_warning: Callable[[str], None] | None = None,
) -> EvalResult:
    """Recompute every score of ``run_id`` (with new ``scorers`` if given) and summarize.

    The run's stored scorer list is replaced by the new one.
    """
    return asyncio.run(
        _rescore(context, run_id, scorers, judge, db_path, score_workers, on_warning)
    )


async def _rescore(
    context: Context,
    run_id: str,
    scorers: Sequence[str | ScorerSpec] | None,
    judge_name: str | None,
    db_path: Path | str,
    score_workers: int,
    on_warning: Callable[[str], None] | None,
) -> EvalResult:
    warnings: list[str] = []

    def warn(text: str) -> None:
        warnings.append(text)
        if on_warning is not None:
            on_warning(text)

    store = open_store(db_path)
    pool = ModelPool(context)
    try:
        run = store.get_run(run_id)
        specs = (
            parse_scorers(list(scorers))  # type: ignore[arg-type]
            if scorers
            else [ScorerSpec.model_validate(s) for s in run.scorers]
        )
        judge_name = judge_name or run.judge
        pairwise_args = pairwise_spec(specs, judge_name is not None)
        judge = None
        if judge_name:
            if judge_name in [m["name"] for m in run.models]:
                warn(f"the judge {judge_name} is also evaluated: it grades its own outputs")
            judge = CachedJudge(await pool.open(judge_name), store)
        built = build_scorers(context, specs, judge)
        dataset = dataset_of_run(store, run.id)
        store.delete_scores(run.id)
        store.set_run_scorers(run.id, [s.model_dump(mode="json") for s in specs], judge_name)
        pairwise = None
        try:
            async with asyncio.TaskGroup() as group:
                scoring = ScoringPass(
                    store, run.id, dataset, built, score_workers, group, reuse=False, warn=warn
                )
                scoring.schedule_existing()
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        if judge is not None and pairwise_args is not None:
            pairwise = await pairwise_summary(store, run.id, dataset, judge, pairwise_args.args)
        stored = run.summary or {}
        result = summarize(
            store, run.id, cells_cached=stored.get("cells_cached", 0), warnings=warnings
        )
        result.pairwise = pairwise
        store.set_run_summary(run.id, result.model_dump(mode="json"))
        return result
    finally:
        await pool.aclose()
        store.close()
