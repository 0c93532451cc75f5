"""Scoring the cells of a run as they finish, and comparing models pairwise.

A score already given to the same generation, row and scorer (in any run) is
copied instead of recomputed, so a re-run served from the cache does not run
sandboxes or judges again; ``llmpick rescore`` turns that off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from llmpick.backends.tool_format import split_output
from llmpick.errors import (
    AuthenticationError,
    BackendError,
    EndpointUnreachableError,
    ScorerError,
)
from llmpick.evaluate.dataset import Dataset, Row
from llmpick.evaluate.scorers.base import Cell
from llmpick.evaluate.scoring import BuiltScorer, CachedJudge, run_scorer
from llmpick.store import CellRecord, GenerationRecord, Store

__all__ = ["ScoringPass", "pairwise_summary"]


def _answer(raw: str) -> dict[str, Any]:
    """A stored raw output as a cell's answer, reasoning and tool calls (scorers see the answer)."""
    split = split_output(raw)
    return {"output": split.content, "reasoning": split.reasoning, "tool_calls": split.tool_calls}


class ScoringPass:
    """Schedules scorer calls for cells into a task group and stores the scores."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        dataset: Dataset,
        scorers: list[BuiltScorer],
        workers: int,
        group: asyncio.TaskGroup,
        reuse: bool = True,
        warn: Callable[[str], None] | None = None,
        on_scheduled: Callable[[int], None] | None = None,
        on_scored: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.rows = {r.id: r for r in dataset.rows}
        self.scorers = scorers
        self.slots = asyncio.Semaphore(workers)
        self.group = group
        self.reuse = reuse
        self.warn = warn or (lambda _text: None)
        self.on_scheduled = on_scheduled or (lambda _n: None)
        self.on_scored = on_scored or (lambda: None)
        #: scores that could not be computed (the judge failed on that cell)
        self.missing = 0
        self.computed = 0
        self.copied = 0

    def schedule_existing(self) -> None:
        """Score every finished cell of the run that lacks a score by some scorer."""
        have = {(s.cell_id, s.scorer_key) for s in self.store.get_scores(self.run_id)}
        for cell in self.store.get_cells(self.run_id):
            if cell.error is not None or cell.output is None:
                continue
            row = self.rows.get(cell.row_id)
            if row is None:
                continue
            todo = [s for s in self.scorers if (cell.id, s.key) not in have]
            if todo:
                self._schedule(cell.id, self._cell(cell.model, row, cell.repeat, cell), cell, todo)

    def schedule(
        self,
        cell_id: int,
        model: str,
        row: Row,
        repeat: int,
        cache_key: str,
        row_sha256: str,
        generation: GenerationRecord,
    ) -> None:
        """Score a cell that has just been generated."""
        cell = Cell(
            row_id=row.id,
            row=row.data,
            model=model,
            repeat=repeat,
            prompt=row.prompt,
            **_answer(generation.output),
            expected=row.expected,
            latency_s=generation.latency_s,
            time_to_first_token_s=generation.time_to_first_token_s,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
        )
        self._schedule(cell_id, cell, (cache_key, row_sha256), self.scorers)

    @staticmethod
    def _cell(model: str, row: Row, repeat: int, record: CellRecord) -> Cell:
        return Cell(
            row_id=row.id,
            row=row.data,
            model=model,
            repeat=repeat,
            prompt=row.prompt,
            **_answer(record.output or ""),
            expected=row.expected,
            latency_s=record.latency_s,
            time_to_first_token_s=record.time_to_first_token_s,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
        )

    def _schedule(
        self,
        cell_id: int,
        cell: Cell,
        source: CellRecord | tuple[str, str],
        scorers: list[BuiltScorer],
    ) -> None:
        cache_key, row_sha256 = (
            (source.cache_key, source.row_sha256) if isinstance(source, CellRecord) else source
        )
        for scorer in scorers:
            if self.reuse:
                earlier = self.store.find_score(cache_key, row_sha256, scorer.key)
                if earlier is not None:
                    self.store.put_score(
                        cell_id,
                        scorer.key,
                        scorer.spec.model_dump(mode="json"),
                        earlier.value,
                        earlier.label,
                        earlier.explanation,
                    )
                    self.copied += 1
                    continue
            self.on_scheduled(1)
            self.group.create_task(self._score(cell_id, cell, scorer))

    async def _score(self, cell_id: int, cell: Cell, scorer: BuiltScorer) -> None:
        try:
            score = await run_scorer(scorer, cell, self.slots)
        except (EndpointUnreachableError, AuthenticationError):
            raise
        except BackendError as exc:
            # one judge call failing (context length, rate limit) leaves this
            # score missing, to be computed on the next run or rescore
            self.missing += 1
            self.warn(
                f"{scorer.key} could not score row {cell.row_id} ({cell.model}): {exc.one_line()}"
            )
            return
        finally:
            self.on_scored()
        self.store.put_score(
            cell_id,
            scorer.key,
            scorer.spec.model_dump(mode="json"),
            score.value,
            score.label,
            score.explanation,
        )
        self.computed += 1


async def pairwise_summary(
    store: Store,
    run_id: str,
    dataset: Dataset,
    judge: CachedJudge,
    args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compare every two models' outputs with the judge (both orders), as JSON.

    ``args`` are the ``pairwise`` scorer's arguments (``rubric``, ``max_tokens``).
    """
    from llmpick.evaluate.scorers import pairwise_compare

    outputs: dict[str, dict[str, str]] = {}
    for cell in store.get_cells(run_id):
        if cell.output is not None and cell.error is None and cell.repeat == 0:
            outputs.setdefault(cell.model, {})[cell.row_id] = cell.output
    questions = {row.id: row.prompt for row in dataset.rows}
    try:
        result = await pairwise_compare(judge, questions, outputs, **(args or {}))
    except TypeError as exc:
        raise ScorerError(
            f"bad arguments for scorer 'pairwise': {exc}", "pairwise accepts: rubric, max_tokens"
        ) from exc
    # the verdicts stay out of the summary: the judge's replies are in the cache
    return result.model_dump(mode="json", exclude={"verdicts"})
