"""The run matrix: models x rows x repeats, committed cell by cell, resumable.

Every model gets the same rendered messages and the same sampling settings
(recorded with the run); repeat ``k`` uses ``seed + k`` when a seed is set, for
every model alike. Models are opened once through a model pool
(:mod:`llmpick.backends.pool`), which also retries per backend. Each model
runs up to ``concurrency`` requests at once (never more than its backend
serves at once: one for a single-sequence in-process model) and halves that
on a rate limit, growing back one step per success. In-process models share
this machine's cores, so they take turns: never two of them (the judge
included) generate side by side.

Each finished cell is committed at once. A cell's cache key is the backend
identity + rendered messages + sampling settings + repeat index, so a re-run
(same command or a new one) reuses every generation that finished before,
and after Ctrl-C or ``kill -9`` the same command resumes its run and does only
what is missing. A generation that fails is recorded as an error (never
scored) and retried next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmpick.backends.base import GenerationRequest, Message, SamplingParams
from llmpick.backends.pool import ModelPool, PooledModel, PoolOptions
from llmpick.backends.spec import ModelSpec
from llmpick.errors import (
    AuthenticationError,
    BackendError,
    EndpointUnreachableError,
    RateLimitError,
    UsageError,
)
from llmpick.evaluate.concurrency import AdaptiveLimiter, OneModelAtATime, first_error
from llmpick.evaluate.dataset import Dataset, Row, load_dataset
from llmpick.evaluate.progress import RunProgress
from llmpick.evaluate.results import EvalResult, summarize
from llmpick.evaluate.scorers.base import ScorerSpec
from llmpick.evaluate.scoring import (
    CachedJudge,
    build_scorers,
    cache_key,
    pairwise_spec,
    parse_scorers,
    scorer_key,
)
from llmpick.evaluate.scoring_pass import ScoringPass, pairwise_summary
from llmpick.store import DEFAULT_DB, GenerationRecord, RunRow, Store, open_store

__all__ = ["ModelOverride", "ModelPrice", "RunOptions", "arun_eval", "run_eval"]

#: errors after which a model's other cells are not attempted in this invocation
_FATAL = (EndpointUnreachableError, AuthenticationError)
#: a batch client may queue much: its workers are bounded by ``concurrency`` anyway
_EVAL_MAX_QUEUE = 1024


class ModelPrice(BaseModel):
    """What a model costs, in USD per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        """Cost of one generation, or None when the token counts are unknown."""
        if prompt_tokens is None or completion_tokens is None:
            return None
        return (
            prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok
        ) / 1e6


class ModelOverride(BaseModel):
    """How one model of a run is asked, instead of the run's shared prompts and params.

    A run with overrides no longer compares the models on identical prompts:
    that is the point (a prompt per model), and its fingerprint says so.
    """

    model_config = ConfigDict(extra="forbid")

    #: the messages of each dataset row, in row order (None: the dataset's)
    messages: list[list[Message]] | None = None
    params: SamplingParams | None = None

    def key(self) -> dict[str, Any]:
        """What identifies the override in the run's fingerprint."""
        return self.model_dump(mode="json", exclude_none=True)


class RunOptions(BaseModel):
    """How to run the matrix (not what: that is the dataset, models, scorers, params)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    repeats: int = Field(default=1, ge=1)
    #: requests in flight per model, at most what its backend serves at once
    concurrency: int = Field(default=8, ge=1)
    #: scorers running at once (code_exec sandboxes are processes)
    score_workers: int = Field(default=2, ge=1)
    #: extra attempts of a cell after the backend gave up on a rate limit
    rate_limit_retries: int = Field(default=5, ge=0)
    judge: str | None = None
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    progress: bool = False
    #: called with each warning as it arises (the CLI prints them)
    on_warning: Callable[[str], None] | None = None
    #: models asked differently from the rest, by model name (the workbench's per-column
    #: prompt templates and sampling); every other model gets the dataset's prompts
    overrides: dict[str, ModelOverride] = Field(default_factory=dict)


class _Model:
    """An opened model of the run."""

    def __init__(self, spec: ModelSpec, pooled: PooledModel, price: ModelPrice | None) -> None:
        self.name = spec.name
        self.spec = spec
        self.pooled = pooled
        self.backend = pooled.backend
        self.identity = pooled.identity()
        self.identity_key = self.identity.key()
        self.price = price
        self.fatal: str | None = None


class _Plan(BaseModel):
    """One cell to fill."""

    model: str
    row_index: int
    repeat: int
    cache_key: str
    row_sha256: str


def _repeat_params(params: SamplingParams, repeat: int) -> SamplingParams:
    if params.seed is None or repeat == 0:
        return params
    return params.model_copy(update={"seed": params.seed + repeat})


def _fingerprint(parts: dict[str, Any]) -> str:
    from llmpick.backends.base import sha256_text

    return sha256_text(json.dumps(parts, sort_keys=True, ensure_ascii=False))


def run_eval(
    context: Any,
    dataset: Dataset | str | Path,
    models: list[str | ModelSpec],
    scorers: Sequence[str | ScorerSpec] | None = None,
    params: SamplingParams | None = None,
    db_path: Path | str = DEFAULT_DB,
    options: RunOptions | None = None,
    pool: ModelPool | None = None,
) -> EvalResult:
    """Evaluate ``models`` on ``dataset`` and return the summary (blocking).

    ``context`` is a :class:`llmpick.context.Context`; ``scorers`` default to
    the suite's or :func:`llmpick.evaluate.scorers.default_scorers` for the
    dataset's columns. Models are opened in ``pool`` (left open) or in a pool
    of the run's own (closed at the end). See :func:`arun_eval` for the async form.
    """
    return asyncio.run(
        arun_eval(context, dataset, models, scorers, params, db_path, options, pool=pool)
    )


async def arun_eval(
    context: Any,
    dataset: Dataset | str | Path,
    models: list[str | ModelSpec],
    scorers: Sequence[str | ScorerSpec] | None = None,
    params: SamplingParams | None = None,
    db_path: Path | str = DEFAULT_DB,
    options: RunOptions | None = None,
    pool: ModelPool | None = None,
) -> EvalResult:
    """Evaluate ``models`` on ``dataset``; resumes the same command's unfinished run."""
    options = options or RunOptions()
    params = params or SamplingParams.model_validate({})
    started = time.perf_counter()
    warnings: list[str] = []

    def warn(text: str) -> None:
        warnings.append(text)
        if options.on_warning is not None:
            options.on_warning(text)

    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if not models:
        raise UsageError("no models to evaluate", "name at least one with -m MODEL")
    specs = [m if isinstance(m, ModelSpec) else context.resolve(m) for m in models]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"a model is named twice: {', '.join(names)}")
    scorer_specs = parse_scorers(list(scorers) if scorers else None)  # type: ignore[arg-type]
    if not scorer_specs:
        from llmpick.evaluate.scorers import default_scorers

        scorer_specs = list(ds.default_scorers) or default_scorers(
            ds.columns,
            [r.data for r in ds.rows],
            expected_column=ds.expected_column,
            has_judge=options.judge is not None,
        )
        if not scorer_specs:
            warn(
                "no scorer applies (no expected, test or schema column): outputs are "
                "recorded but not scored; add --scorer NAME or --judge MODEL"
            )
    judge_spec = context.resolve(options.judge) if options.judge else None
    if judge_spec is not None and judge_spec.name in names:
        warn(f"the judge {judge_spec.name} is also evaluated: it grades its own outputs")

    pairwise = pairwise_spec(scorer_specs, judge_spec is not None)
    store = open_store(db_path)
    own_pool = pool is None
    if pool is None:
        pool = ModelPool(
            context,
            PoolOptions(remote_concurrency=options.concurrency, max_queue=_EVAL_MAX_QUEUE),
        )
    turns = OneModelAtATime()
    try:
        judge: CachedJudge | None = None
        if judge_spec is not None:
            judge_model = await pool.open(judge_spec)
            judge = CachedJudge(judge_model, store, _turn_for(judge_model, turns))
        built = build_scorers(context, scorer_specs, judge)
        for scorer in built:
            check_rows = getattr(scorer.fn, "check_rows", None)
            if callable(check_rows):
                check_rows([r.data for r in ds.rows])  # a bad row fails now, not mid-run
        if judge is not None and not judge.backend.is_local:
            await _preflight(judge)

        run_models: list[_Model] = []
        for spec in specs:
            pooled = await pool.open(spec)
            run_models.append(_Model(spec, pooled, options.prices.get(spec.name)))
        if judge is not None:
            from llmpick.evaluate.scorers import self_judging

            for text in self_judging(judge.identity, {m.name: m.identity for m in run_models}):
                if judge_spec is None or judge_spec.name not in names:
                    warn(text)
        param_dump = params.model_dump(mode="json")
        parts = {
            "dataset": ds.sha256(),
            "models": [[m.name, m.identity_key] for m in run_models],
            "params": param_dump,
            "repeats": options.repeats,
            "scorers": [scorer_key(s) for s in scorer_specs],
            "judge": judge.identity_key if judge else None,
        }
        overrides = _checked_overrides(options.overrides, names, len(ds.rows))
        if overrides:  # absent otherwise: runs without overrides keep their fingerprints
            parts["overrides"] = {name: o.key() for name, o in sorted(overrides.items())}
            param_dump = {**param_dump, "per_model": {
                n: o.params.model_dump(mode="json") for n, o in overrides.items() if o.params
            }}  # fmt: skip
        fingerprint = _fingerprint(parts)
        run_id = store.unfinished_run(fingerprint)
        if run_id is None:
            run_id = store.create_run(
                fingerprint=fingerprint,
                dataset=ds.source,
                dataset_sha256=ds.sha256(),
                models=[
                    {
                        "name": m.name,
                        "spec": m.spec.model_dump(mode="json"),
                        "identity": m.identity.model_dump(mode="json"),
                        "identity_key": m.identity_key,
                        "price": m.price.model_dump() if m.price else None,
                    }
                    for m in run_models
                ],
                scorers=[s.model_dump(mode="json") for s in scorer_specs],
                params={**param_dump, "seed_per_repeat": "seed + repeat"},
                repeats=options.repeats,
                judge=judge_spec.name if judge_spec else None,
            )
        else:
            store.set_run_status(run_id, "running")
        store.add_rows(run_id, [_run_row(r) for r in ds.rows])

        runner = _Runner(store, run_id, ds, run_models, params, options, turns, warn)
        status = "interrupted"
        pairwise_result = None
        try:
            with RunProgress(options.progress) as progress:
                async with asyncio.TaskGroup() as group:
                    scoring = ScoringPass(
                        store,
                        run_id,
                        ds,
                        built,
                        options.score_workers,
                        group,
                        warn=warn,
                        on_scheduled=progress.add_scoring,
                        on_scored=progress.scored,
                    )
                    cells_cached = await runner.run(scoring, progress)
            if judge is not None and pairwise is not None:
                pairwise_result = await pairwise_summary(store, run_id, ds, judge, pairwise.args)
            status = "finished" if runner.errors == 0 and scoring.missing == 0 else "incomplete"
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        finally:
            store.set_run_status(run_id, status)
        if runner.errors:
            warn(
                f"{runner.errors} cell(s) failed to generate and are not scored; "
                "run the same command again to retry them"
            )
        wall_s = time.perf_counter() - started
        result = summarize(store, run_id, cells_cached=cells_cached, warnings=warnings)
        result.pairwise = pairwise_result
        store.set_run_summary(run_id, result.model_dump(mode="json"))
        result.timing = {
            "wall_s": wall_s,
            "matrix_wall_s": runner.wall_s,
            "generation_s": runner.generation_s,
        }
        return result
    finally:
        if own_pool:
            await pool.aclose()
        store.close()


def _checked_overrides(
    overrides: dict[str, ModelOverride], names: list[str], n_rows: int
) -> dict[str, ModelOverride]:
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise UsageError(f"overrides name models that are not in the run: {', '.join(unknown)}")
    for name, override in overrides.items():
        if override.messages is not None and len(override.messages) != n_rows:
            raise UsageError(
                f"the override of {name} has {len(override.messages)} prompts for {n_rows} rows"
            )
    return {n: o for n, o in overrides.items() if o.messages is not None or o.params is not None}


def _turn_for(
    model: PooledModel, turns: OneModelAtATime
) -> Callable[[], contextlib.AbstractAsyncContextManager[Any]]:
    """In-process models take turns on this machine's cores; HTTP ones need none."""
    if model.backend.is_local:
        return lambda: turns.turn(model.name)
    return contextlib.nullcontext


async def _preflight(judge: CachedJudge) -> None:
    """Reach a remote judge once before the run, so a dead endpoint fails fast."""
    request = GenerationRequest(
        messages=[Message(role="user", content="Reply with OK.")],
        params=SamplingParams.model_validate({"max_tokens": 1, "temperature": 0.0}),
    )
    await judge(request)


def _run_row(row: Row) -> RunRow:
    return RunRow(
        row_id=row.id,
        row_index=row.index,
        category=row.category,
        expected=row.expected,
        messages=[m.model_dump(mode="json") for m in row.messages],
        data=row.data,
    )


class _Runner:
    """Fills the cells of one run."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        dataset: Dataset,
        models: list[_Model],
        params: SamplingParams,
        options: RunOptions,
        turns: OneModelAtATime,
        warn: Callable[[str], None],
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.dataset = dataset
        self.models = {m.name: m for m in models}
        self.params = params
        self.options = options
        self.turns = turns
        self.warn = warn
        self.errors = 0
        self.generation_s = 0.0
        self.wall_s = 0.0
        self.row_hashes = [r.sha256() for r in dataset.rows]
        shared = [r.messages for r in dataset.rows]
        # per model: each row's messages (objects and dumps) and the sampling params
        self.prompts: dict[str, list[list[Message]]] = {}
        self.messages: dict[str, list[list[dict[str, Any]]]] = {}
        self.model_params: dict[str, SamplingParams] = {}
        for name in self.models:
            override = options.overrides.get(name)
            prompts = override.messages if override and override.messages else shared
            self.prompts[name] = prompts
            self.messages[name] = [[m.model_dump(mode="json") for m in ms] for ms in prompts]
            self.model_params[name] = override.params if override and override.params else params

    def plan(self) -> list[_Plan]:
        cells = []
        for model in self.models.values():
            row_hash_needed = model.backend.needs_row
            messages, params = self.messages[model.name], self.model_params[model.name]
            for index, row_hash in enumerate(self.row_hashes):
                for repeat in range(self.options.repeats):
                    cells.append(
                        _Plan(
                            model=model.name,
                            row_index=index,
                            repeat=repeat,
                            cache_key=cache_key(
                                model.identity_key,
                                messages[index],
                                _repeat_params(params, repeat).model_dump(mode="json"),
                                repeat,
                                row_hash if row_hash_needed else None,
                                self.dataset.rows[index].request.fields(),
                            ),
                            row_sha256=row_hash,
                        )
                    )
        return cells

    async def run(self, scoring: ScoringPass, progress: RunProgress) -> int:
        """Fill every missing cell; returns how many were already there or cached."""
        started = time.perf_counter()
        plan = self.plan()
        finished = self.store.finished_cells(self.run_id)
        cached = self.store.cached_keys([p.cache_key for p in plan])
        todo: list[_Plan] = []
        reused = 0
        for p in plan:
            row_id = self.dataset.rows[p.row_index].id
            if (p.model, row_id, p.repeat) in finished:
                reused += 1
            elif p.cache_key in cached:
                price = self.models[p.model].price
                hit = self.store.get_generation(p.cache_key) if price else None
                self.store.put_cell(
                    run_id=self.run_id,
                    model=p.model,
                    row_id=row_id,
                    repeat=p.repeat,
                    cache_key=p.cache_key,
                    row_sha256=p.row_sha256,
                    generation=None,
                    generation_key=p.cache_key,
                    cached=True,
                    cost_usd=price.cost(hit.prompt_tokens, hit.completion_tokens)
                    if price and hit
                    else None,
                )
                reused += 1
            else:
                todo.append(p)
        scoring.schedule_existing()
        progress.start_cells(len(plan), len(plan) - len(todo))
        self.progress = progress
        queues: dict[str, list[_Plan]] = {}
        for p in todo:
            queues.setdefault(p.model, []).append(p)
        async with asyncio.TaskGroup() as group:
            for name, cells in queues.items():
                group.create_task(self._run_model(self.models[name], cells, scoring))
        self.wall_s = time.perf_counter() - started
        return reused

    async def _run_model(self, model: _Model, cells: list[_Plan], scoring: ScoringPass) -> None:
        limiter = AdaptiveLimiter(min(self.options.concurrency, model.pooled.concurrency))
        turn = _turn_for(model.pooled, self.turns)
        queue: asyncio.Queue[_Plan] = asyncio.Queue()
        for p in cells:
            queue.put_nowait(p)

        async def worker() -> None:
            while not queue.empty():
                await self._cell(model, queue.get_nowait(), scoring, limiter, turn)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(limiter.max_limit, len(cells))):
                group.create_task(worker())

    async def _cell(
        self,
        model: _Model,
        p: _Plan,
        scoring: ScoringPass,
        limiter: AdaptiveLimiter,
        turn: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
    ) -> None:
        row = self.dataset.rows[p.row_index]
        params = _repeat_params(self.model_params[model.name], p.repeat)
        asks = row.request
        request = GenerationRequest(
            messages=self.prompts[model.name][p.row_index],
            params=params,
            row=row.data if model.backend.needs_row else None,
            tools=asks.tools,
            tool_choice=asks.tool_choice,
            parallel_tool_calls=asks.parallel_tool_calls,
            response_format=asks.response_format,
        )
        error: str | None = None
        generation = None
        attempt = 0
        while model.fatal is None:
            try:
                async with limiter.slot(), turn():
                    generation = await model.pooled.generate(request)
                await limiter.succeeded()
                break
            except RateLimitError as exc:
                if attempt >= self.options.rate_limit_retries:
                    error = exc.one_line()
                    break
                limiter.rate_limited()
                attempt += 1
                await asyncio.sleep(min(30.0, 2.0**attempt) * (0.5 + random.random()))
            except _FATAL as exc:
                model.fatal = exc.one_line()
                self.warn(f"{model.name}: {model.fatal}; its remaining cells are skipped")
            except BackendError as exc:
                error = exc.one_line()
                break
        if model.fatal is not None and generation is None:
            error = model.fatal
        record = None
        cost = None
        if generation is not None:
            self.generation_s += generation.total_s
            record = GenerationRecord(
                cache_key=p.cache_key,
                identity_key=model.identity_key,
                identity=model.identity.model_dump(mode="json"),
                messages=self.messages[model.name][p.row_index],
                params=params.model_dump(mode="json"),
                repeat=p.repeat,
                # the raw text: reasoning and tool calls in tags, split again for scorers
                output=generation.raw_output(),
                prompt_tokens=generation.usage.prompt_tokens,
                completion_tokens=generation.usage.completion_tokens,
                time_to_first_token_s=generation.time_to_first_token_s,
                latency_s=generation.total_s,
                finish_reason=generation.finish_reason,
            )
            if model.price is not None:
                cost = model.price.cost(
                    generation.usage.prompt_tokens, generation.usage.completion_tokens
                )
        else:
            self.errors += 1
        cell_id = self.store.put_cell(
            run_id=self.run_id,
            model=model.name,
            row_id=row.id,
            repeat=p.repeat,
            cache_key=p.cache_key,
            row_sha256=p.row_sha256,
            generation=record,
            cached=False,
            cost_usd=cost,
            error=error,
        )
        self.progress.advance(model.name)
        if record is not None:
            scoring.schedule(cell_id, model.name, row, p.repeat, p.cache_key, p.row_sha256, record)
