"""The ``choose`` pipeline: shortlist, probe, evaluate, bench, cost, rank (one function a stage)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmpick.backends.base import SamplingParams
from llmpick.backends.pool import ModelPool, PoolOptions
from llmpick.backends.spec import ModelSpec
from llmpick.choose.calibrate import calibration_from_bench
from llmpick.choose.candidates import _candidates, _error_text, _probe
from llmpick.choose.cells import _failures, _row_scores, _samples, _why_unscored
from llmpick.choose.measure import _bench, _performance
from llmpick.choose.models import (
    CandidateStatus,
    ChooseOptions,
    ChooseResult,
    RankedModel,
    Verdict,
    _tell,
)
from llmpick.choose.ranking import _pareto, _rank, _verdict
from llmpick.context import Context
from llmpick.cost import (
    CostRow,
    estimate_throughput,
    hourly_price,
    measured_throughput,
    self_hosted_row,
)
from llmpick.data import sample_data_path
from llmpick.errors import UsageError
from llmpick.fit.calibration import Calibration
from llmpick.fit.measured_loss import loss_lookup
from llmpick.recommend import Constraints, Recommendation, recommend


class _Measured(BaseModel):
    """What the evaluate and bench stages produced (empty when no candidate ran)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    evaluation: Any = None
    samples: list[dict[str, Any]] = Field(default_factory=list)
    failures: list[dict[str, Any]] = Field(default_factory=list)
    row_scores: dict[str, dict[str, float]] = Field(default_factory=dict)
    cells: list[dict[str, Any]] = Field(default_factory=list)
    performance: dict[str, dict[str, Any]] = Field(default_factory=dict)


def _pick_scorers(options: ChooseOptions, dataset: Any) -> list[str] | None:
    if options.scorers:
        return list(options.scorers)
    if dataset.default_scorers:
        return None
    from llmpick.evaluate.scorers import default_scorers
    from llmpick.evaluate.scorers.auto import row_kind

    kinds = {row_kind(r.data, r.expected) for r in dataset.rows} - {"judge"}
    if not kinds:
        return None
    column_default = default_scorers(
        dataset.columns, [r.data for r in dataset.rows], expected_column=dataset.expected_column
    )
    if len(kinds) == 1 and column_default and column_default[0].name == next(iter(kinds)):
        return None
    # mixed rows (code, JSON, numbers, text): pick the scorer row by row
    return ["auto"]


def choose(context: Context, options: ChooseOptions) -> ChooseResult:
    """Run the whole pipeline and return the result (write it with :mod:`llmpick.report`).

    Raises llmpick errors for bad input (missing data, unknown model or device,
    bad scorer); a candidate that fails to load or generate is reported, not raised.
    """
    from llmpick.catalog import load_catalog
    from llmpick.evaluate import load_dataset
    from llmpick.hardware import detect_local

    timing: dict[str, float] = {}
    warnings: list[str] = []
    started = time.perf_counter()
    data_path = options.data or sample_data_path()
    dataset = load_dataset(data_path)
    if options.limit is not None:
        dataset = dataset.model_copy(update={"rows": dataset.rows[: options.limit]})
    constraints = Constraints(
        task=options.task,
        languages=options.languages,
        device=options.device,
        license=options.license,
        min_context=options.min_context,
        max_price=options.max_price,
        weights=options.weights,
        top=options.top,
    )
    _tell(options, "shortlist", f"shortlisting for task {options.task}")
    catalog = load_catalog()
    losses = loss_lookup(options.db_path)  # what llmpick quant measured, where it did
    rec = recommend(constraints, catalog, losses=losses)
    statuses, specs = _candidates(context, options, rec, catalog)
    timing["shortlist_s"] = time.perf_counter() - started

    # probe, eval and bench share one pool: each model is loaded once, by the probe
    pool = ModelPool(
        context, PoolOptions(remote_concurrency=max(8, options.concurrency), max_queue=1024)
    )
    try:
        identities, alive = _probe_all(pool, options, specs, statuses, warnings)
        timing["probe_s"] = time.perf_counter() - started - sum(timing.values())
        measured = _measure(
            context, pool, options, dataset, alive, identities, statuses, warnings, timing
        )
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(pool.aclose())

    _tell(options, "rank", "ranking")
    here = detect_local()
    calibration = _own_calibration(options, rec, alive, measured, here)
    if calibration is not None:
        rec = recommend(constraints, catalog, calibration=calibration, losses=losses)
        warnings.append(f"shortlist speeds {calibration.describe()} (no stored calibration)")
    cost_here, cost_rows = _cost_rows(
        options, rec, catalog, statuses, measured.performance, here, calibration
    )
    ranking, verdict, pareto = _decide(options, measured, cost_here)
    timing["total_s"] = time.perf_counter() - started
    return ChooseResult(
        constraints={**constraints.model_dump(mode="json"), "device_resolved": rec.device},
        data={
            "source": str(data_path),
            "rows": len(dataset.rows),
            "bundled_sample": options.data is None,
            "max_tokens": options.max_tokens,
            "seed": options.seed,
            "concurrency": options.concurrency,
            "here": here.summary(),
        },
        shortlist=rec,
        candidates=statuses,
        evaluation=measured.evaluation.model_dump(mode="json") if measured.evaluation else None,
        samples=measured.samples,
        failures=measured.failures,
        performance={
            k: {x: y for x, y in v.items() if x != "bench"} for k, v in measured.performance.items()
        },
        cost=cost_rows,
        ranking=ranking,
        verdict=verdict,
        pareto=pareto,
        timing_s={k: round(v, 2) for k, v in timing.items()},
        warnings=warnings,
    )


def _own_calibration(
    options: ChooseOptions,
    rec: Recommendation,
    alive: list[ModelSpec],
    measured: _Measured,
    here: Any,
) -> Calibration | None:
    """Choose's own calibration when the shortlist is for this machine and none is stored."""
    from llmpick.hardware import get_device

    target = get_device(options.device) if options.device else here
    if rec.calibration is not None or target.host is None:
        return None  # already calibrated (stored), or estimates for another machine
    calibration = calibration_from_bench(alive, measured.performance, here.id)
    if calibration is None or not calibration.applies_to(target):
        return None
    return calibration


def _probe_all(
    pool: ModelPool,
    options: ChooseOptions,
    specs: list[ModelSpec],
    statuses: list[CandidateStatus],
    warnings: list[str],
) -> tuple[dict[str, dict[str, Any]], list[ModelSpec]]:
    """Load each candidate once; a candidate that cannot load is marked failed, not fatal."""
    identities: dict[str, dict[str, Any]] = {}
    alive: list[ModelSpec] = []
    for spec, status in zip(specs, [s for s in statuses if s.status == "evaluated"], strict=True):
        _tell(options, "probe", f"loading {spec.name}")
        try:
            identities[spec.name] = _probe(pool, spec)
            status.identity = identities[spec.name]
            alive.append(spec)
        except Exception as exc:  # a candidate that cannot load is reported, not fatal
            status.status = "failed"
            status.error = _error_text(exc)
            warnings.append(f"{spec.name} failed to load: {status.error}")
    return identities, alive


def _measure(
    context: Context,
    pool: ModelPool,
    options: ChooseOptions,
    dataset: Any,
    alive: list[ModelSpec],
    identities: dict[str, dict[str, Any]],
    statuses: list[CandidateStatus],
    warnings: list[str],
    timing: dict[str, float],
) -> _Measured:
    """Evaluate the runnable candidates on the data, then bench each one (both stored)."""
    from llmpick.store import open_store

    started = time.perf_counter()
    store = open_store(options.db_path)
    measured = _Measured()
    try:
        if alive:
            _evaluate(context, pool, options, dataset, alive, statuses, warnings, store, measured)
        timing["evaluate_s"] = time.perf_counter() - started
        for spec in alive:
            status = next(s for s in statuses if s.name == spec.name)
            if status.status == "failed":
                continue
            _tell(options, "bench", f"measuring {spec.name}")
            try:
                bench, reused = _bench(context, options, spec, identities[spec.name], store, pool)
            except Exception as exc:  # a failed measurement is reported, not fatal
                measured.performance[spec.name] = {"error": _error_text(exc)}
                warnings.append(f"bench of {spec.name} failed: {_error_text(exc)}")
                continue
            evaluation = measured.evaluation
            summary = evaluation.models.get(spec.name) if evaluation else None
            measured.performance[spec.name] = {**_performance(bench, summary), "reused": reused}
        timing["bench_s"] = time.perf_counter() - started - timing["evaluate_s"]
    finally:
        store.close()
    return measured


def _evaluate(
    context: Context,
    pool: ModelPool,
    options: ChooseOptions,
    dataset: Any,
    alive: list[ModelSpec],
    statuses: list[CandidateStatus],
    warnings: list[str],
    store: Any,
    measured: _Measured,
) -> None:
    from llmpick.evaluate import RunOptions, cell_rows, run_eval, side_by_side

    _tell(options, "evaluate", f"{len(alive)} model(s) x {len(dataset.rows)} prompts")
    evaluation = run_eval(
        context,
        dataset,
        list(alive),
        scorers=_pick_scorers(options, dataset),
        params=SamplingParams(max_tokens=options.max_tokens, temperature=0.0, seed=options.seed),
        db_path=options.db_path,
        options=RunOptions(
            judge=options.judge,
            progress=options.progress,
            on_warning=lambda text: _tell(options, "warning", text),
        ),
        pool=pool,
    )
    warnings += evaluation.warnings
    cells = cell_rows(store, evaluation.run_id)
    measured.evaluation = evaluation
    measured.cells = cells
    measured.row_scores = _row_scores(cells)
    measured.samples = _samples(side_by_side(store, evaluation.run_id, width=600), dataset)
    measured.failures = _failures(cells)
    for status in statuses:
        summary = evaluation.models.get(status.name)
        if summary is not None and summary.n == 0 and summary.errors:
            first = next(c["error"] for c in cells if c["model"] == status.name)
            status.status = "failed"
            status.error = f"every generation failed: {first}"


def _cost_rows(
    options: ChooseOptions,
    rec: Recommendation,
    catalog: Any,
    statuses: list[CandidateStatus],
    performance: dict[str, dict[str, Any]],
    here: Any,
    calibration: Calibration | None = None,
) -> tuple[dict[str, CostRow], list[CostRow]]:
    """Cost of the measured models here, then of the shortlist on the target device."""
    from llmpick.hardware import get_device

    cost_here: dict[str, CostRow] = {}
    hourly_here = hourly_price(here, options.gpu_hourly_usd)
    for name, perf in performance.items():
        bench_doc = perf.get("bench")
        status = next(s for s in statuses if s.name == name)
        card = catalog.find(status.catalog_id) if status.catalog_id else None
        throughput = measured_throughput(bench_doc, options.concurrency) if bench_doc else None
        cost_here[name] = self_hosted_row(name, here, throughput, hourly_here, card)
    cost_rows = list(cost_here.values())
    target_device = get_device(options.device) if options.device else here
    hourly_target = hourly_price(target_device, options.gpu_hourly_usd)
    for cand in rec.candidates:
        throughput = estimate_throughput(
            cand.id,
            target_device,
            options.concurrency,
            quant=cand.quant,
            context=rec.context,
            calibration=calibration,
        )
        cost_rows.append(
            self_hosted_row(cand.id, target_device, throughput, hourly_target, catalog.get(cand.id))
        )
    return cost_here, cost_rows


def _decide(
    options: ChooseOptions, measured: _Measured, cost_here: dict[str, CostRow]
) -> tuple[list[RankedModel], Verdict, dict[str, list[str]]]:
    """Rank, state the verdict, and draw the Pareto fronts (nothing when nothing ran)."""
    ranking: list[RankedModel] = []
    verdict = Verdict(status="none", sentence="no candidate could run here; see how to run them")
    pareto: dict[str, list[str]] = {}
    evaluation = measured.evaluation
    if evaluation is None:
        return ranking, verdict, pareto
    ranking = _rank(evaluation, measured.performance, cost_here, options.weights)
    verdict = _verdict(ranking, evaluation, measured.row_scores)
    if verdict.status == "none":
        verdict.sentence = _why_unscored(measured.cells)
    latency = {
        r.model: (r.quality or 0.0, r.latency_p50_s) for r in ranking if r.latency_p50_s is not None
    }
    pareto["quality_latency"] = _pareto({k: (q, float(v)) for k, (q, v) in latency.items()})
    dollars = {r.model: (r.quality or 0.0, r.usd_per_mtok) for r in ranking if r.usd_per_mtok}
    pareto["quality_cost"] = _pareto({k: (q, float(v)) for k, (q, v) in dollars.items()})
    return ranking, verdict, pareto


def check_options(options: ChooseOptions) -> None:
    """Fail fast on inputs that would only fail after models load."""
    if options.data is not None and not Path(options.data).exists():
        from llmpick.errors import DataError

        raise DataError(f"data file {options.data} does not exist", "check the --data path")
    if options.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
