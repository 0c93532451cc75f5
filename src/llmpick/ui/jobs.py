"""Background runs of a sheet's columns, stopped and resumed through the store.

Each sheet runs at most one job: :func:`llmpick.evaluate.arun_eval` with the
sheet's model columns and scorers, unchanged — so a stopped job, a crashed
server or a new column all resume the same way the CLI does: finished cells
stay in the run, cached generations are reused, only what is missing runs.
The page polls :meth:`Jobs.progress`, read from the store.

Models run in a :class:`~llmpick.backends.pool.ModelPool`: the gateway's when
the workbench is mounted on it (``llmpick serve --ui``: the page and the API
share one loaded model), else the workbench's own. Either way a model opens
once and stays open across the sheet's runs (adding a column restarts the run
with every column); the workbench closes only a pool it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from llmpick.backends.base import SamplingParams
from llmpick.backends.pool import ModelPool, PoolOptions
from llmpick.context import Context
from llmpick.errors import LlmpickError
from llmpick.evaluate import RunOptions, arun_eval
from llmpick.evaluate.runner import ModelOverride
from llmpick.evaluate.scorers.pairwise import pairwise_compare
from llmpick.evaluate.scoring import CachedJudge
from llmpick.store import open_store
from llmpick.ui.capabilities import Admission, AdmittedPool, ModelCapabilities
from llmpick.ui.models import Progress, SheetInfo
from llmpick.ui.sheets import WorkbenchStore

__all__ = ["Jobs"]

_MAX_QUEUE = 1024


class Jobs:
    """The running jobs of one workbench (one per sheet at most)."""

    def __init__(self, context: Context, db_path: Path, pool: ModelPool | None = None) -> None:
        self.context = context
        self.db_path = db_path
        self._own_pool = pool is None
        # a sheet queues at most its rows x columns; the runner keeps few in flight
        self.pool = pool or ModelPool(context, PoolOptions(max_queue=_MAX_QUEUE))
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.failures: dict[str, str] = {}

    def running(self, sheet_id: str) -> bool:
        """Whether the sheet's job is still working."""
        task = self.tasks.get(sheet_id)
        return task is not None and not task.done()

    def start(
        self,
        sheet: SheetInfo,
        wb: WorkbenchStore,
        capabilities: ModelCapabilities | None = None,
        admission: Admission | None = None,
    ) -> None:
        """Fill the sheet's missing cells in the background (no-op if already running).

        With ``capabilities``, models open only by declared names, and with
        ``admission`` every generation is admitted as the key that started the job.
        """
        if self.running(sheet.id) or not sheet.models:
            return
        self.failures.pop(sheet.id, None)
        dataset = wb.dataset(sheet.id)
        overrides = _overrides(wb, sheet)
        pool: Any = self.pool
        if capabilities is not None:
            pool = AdmittedPool(self.pool, capabilities, admission)
        task = asyncio.get_running_loop().create_task(self._run(sheet, dataset, overrides, pool))
        self.tasks[sheet.id] = task

    async def _run(
        self, sheet: SheetInfo, dataset: Any, overrides: dict[str, ModelOverride], pool: Any
    ) -> None:
        s = sheet.settings
        params = SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, seed=s.seed)
        judges = [c.spec for c in sheet.columns if c.kind == "pairwise"]
        judge = s.judge_model or (judges[0] if judges else None)
        needs_judge = any(spec.split(":")[0] == "judge" for spec in sheet.scorers)
        try:
            await arun_eval(
                self.context,
                dataset,
                list(sheet.models),
                scorers=list(sheet.scorers) or None,
                params=params,
                db_path=self.db_path,
                options=RunOptions(
                    judge=judge if (needs_judge or judges) else None, overrides=overrides
                ),
                pool=pool,
            )
            for judge_model in judges:
                await self._pairwise(sheet, dataset, judge_model, pool)
        except LlmpickError as exc:
            self.failures[sheet.id] = exc.one_line()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a job must never take the server down with it
            self.failures[sheet.id] = f"{type(exc).__name__}: {exc}"

    async def _pairwise(self, sheet: SheetInfo, dataset: Any, judge_model: str, pool: Any) -> None:
        """Ask the judge to compare every two model columns (both orders), keep the verdicts."""
        model = await pool.open(judge_model)
        with open_store(self.db_path) as store:
            judge = CachedJudge(model, store)
            wb = WorkbenchStore(store)
            run_id = wb.current_run(sheet.id)
            outputs: dict[str, dict[str, str]] = {}
            for cell in store.get_cells(run_id or ""):
                if cell.output is not None and cell.error is None and cell.repeat == 0:
                    outputs.setdefault(cell.model, {})[cell.row_id] = cell.output
            questions = {row.id: row.prompt for row in dataset.rows}
            # the judge gets the sheet's token budget: its reasoning and the verdict
            result = await pairwise_compare(
                judge, questions, outputs, max_tokens=sheet.settings.max_tokens
            )
            wb.set_pairwise(sheet.id, [v.model_dump() for v in result.verdicts])

    async def stop(self, sheet_id: str) -> None:
        """Stop the sheet's job; finished cells stay, the run is marked interrupted."""
        task = self.tasks.get(sheet_id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def aclose(self) -> None:
        """Stop every job (server shutdown); close the models if the pool is ours."""
        for sheet_id in list(self.tasks):
            await self.stop(sheet_id)
        if self._own_pool:
            await self.pool.aclose()

    def progress(self, wb: WorkbenchStore, sheet: SheetInfo) -> Progress:
        """Cells done out of the cells the sheet's columns need."""
        total = sheet.n_rows * len(sheet.models)
        done = errors = 0
        status = None
        if sheet.run_id is not None:
            row = wb.db.execute(
                "SELECT sum(generation_key IS NOT NULL), sum(error IS NOT NULL),"
                " (SELECT status FROM runs WHERE id = ?) FROM cells WHERE run_id = ?"
                " AND repeat = 0",
                (sheet.run_id, sheet.run_id),
            ).fetchone()
            done, errors, status = int(row[0] or 0), int(row[1] or 0), row[2]
            models = {r[0] for r in wb.db.execute(
                "SELECT DISTINCT model FROM cells WHERE run_id = ?", (sheet.run_id,))}  # fmt: skip
            if not set(sheet.models) <= models | set(self._run_models(wb, sheet.run_id)):
                done = errors = 0  # a new column was added: its run has not started yet
        if self.running(sheet.id):
            state = "running"
        elif sheet.id in self.failures:
            state = "failed"
        elif not sheet.models:
            state = "idle"
        elif total and done >= total and status in ("finished", "incomplete"):
            state = "finished"
        else:
            state = "stopped"
        return Progress(
            state=state,
            run_id=sheet.run_id,
            done=min(done, total),
            total=total,
            errors=errors,
            message=self.failures.get(sheet.id),
        )

    @staticmethod
    def _run_models(wb: WorkbenchStore, run_id: str) -> list[str]:
        row = wb.db.execute("SELECT models FROM runs WHERE id = ?", (run_id,)).fetchone()
        return [m["name"] for m in json.loads(row[0])] if row else []


def _overrides(wb: WorkbenchStore, sheet: SheetInfo) -> dict[str, ModelOverride]:
    """The model columns asked with their own template or sampling, for the runner."""
    s = sheet.settings
    found: dict[str, ModelOverride] = {}
    for name in sheet.models:
        own = s.columns.get(name)
        if own is None or own.is_empty():
            continue
        params = None
        if own.max_tokens is not None or own.temperature is not None:
            params = SamplingParams(
                max_tokens=own.max_tokens or s.max_tokens,
                temperature=s.temperature if own.temperature is None else own.temperature,
                seed=s.seed,
            )
        messages = wb.column_prompts(sheet.id, own.template) if own.template else None
        found[name] = ModelOverride(messages=messages, params=params)
    return found
