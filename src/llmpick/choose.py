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
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmpick.backends.base import SamplingParams, sha256_text
from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.backends.spec import ModelSpec
from llmpick.cost import (
    CostRow,
    estimate_throughput,
    hourly_price,
    measured_throughput,
    self_hosted_row,
)
from llmpick.errors import LlmpickError, UsageError
from llmpick.recommend import Constraints, Recommendation, Weights, recommend

__all__ = [
    "CandidateStatus",
    "ChooseOptions",
    "ChooseResult",
    "RankedModel",
    "Verdict",
    "choose",
    "sample_data_path",
]

#: speed score = tokens/s / (tokens/s + this): 30 tokens/s scores 0.5 (as in recommend)
SPEED_HALF_POINT_TPS = 30.0


def sample_data_path() -> Path:
    """Path of the bundled sample dataset (40 rows, mixed tasks and languages)."""
    return Path(str(resources.files("llmpick.data").joinpath("sample.jsonl")))


class ChooseOptions(BaseModel):
    """What ``choose`` runs: constraints, data, models, and how hard to measure."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    data: Path | None = None
    task: str = "general"
    device: str | None = None
    languages: list[str] = Field(default_factory=list)
    license: Literal["any", "commercial", "permissive"] = "any"
    min_context: int | None = Field(default=None, gt=0)
    max_price: float | None = Field(default=None, ge=0)
    weights: Weights = Field(default_factory=Weights)
    top: int = Field(default=5, ge=1)
    models: list[str] = Field(default_factory=list)
    judge: str | None = None
    scorers: list[str] = Field(default_factory=list)
    db_path: Path = Path("llmpick.db")
    gpu_hourly_usd: float | None = Field(default=None, gt=0)
    concurrency: int = Field(default=1, ge=1)
    max_tokens: int = Field(default=128, ge=1)
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0
    bench_requests: int = Field(default=3, ge=1)
    bench_prompt_tokens: int = Field(default=64, ge=1)
    bench_max_tokens: int = Field(default=32, ge=1)
    progress: bool = False
    #: called with (stage, message): stages shortlist, probe, evaluate, bench, rank
    on_event: Callable[[str, str], None] | None = None


class CandidateStatus(BaseModel):
    """One candidate: where it came from, whether it ran here, and how to run it if not."""

    name: str
    catalog_id: str | None = None
    origin: Literal["shortlist", "bundled", "config", "user"]
    in_shortlist: bool = False
    status: Literal["evaluated", "failed", "not-runnable"]
    error: str | None = None
    how_to_run: list[str] = Field(default_factory=list)
    identity: dict[str, Any] | None = None


class RankedModel(BaseModel):
    """An evaluated model's place under the user's weights (each part in [0, 1])."""

    model: str
    rank: int
    quality: float | None
    quality_ci95: tuple[float, float] | None
    n: int
    output_tokens_per_second: float | None
    speed_kind: Literal["measured", "estimated"] | None
    latency_p50_s: float | None
    usd_per_mtok: float | None
    quality_score: float
    speed_score: float
    cost_score: float
    weighted_score: float


class Verdict(BaseModel):
    """The decision, and how strong the evidence for it is."""

    status: Literal["winner", "tied", "trade-off", "single", "none"]
    winner: str | None = None
    leader: str | None = None
    sentence: str
    tied: list[str] = Field(default_factory=list)
    #: other model -> roughly how many more prompts would separate it from the leader
    prompts_needed: dict[str, int | None] = Field(default_factory=dict)
    comparisons: list[str] = Field(default_factory=list)


class ChooseResult(BaseModel):
    """Everything ``choose`` found; ``to_json()`` is ``result.json``."""

    constraints: dict[str, Any]
    data: dict[str, Any]
    shortlist: Recommendation
    candidates: list[CandidateStatus]
    evaluation: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = Field(default_factory=list)
    failures: list[dict[str, Any]] = Field(default_factory=list)
    performance: dict[str, dict[str, Any]] = Field(default_factory=dict)
    cost: list[CostRow] = Field(default_factory=list)
    ranking: list[RankedModel] = Field(default_factory=list)
    verdict: Verdict
    pareto: dict[str, list[str]] = Field(default_factory=dict)
    timing_s: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @property
    def winner(self) -> str | None:
        """The model the evidence separates, or None."""
        return self.verdict.winner

    def to_json(self) -> dict[str, Any]:
        """Return the ``result.json`` document (with ``winner`` at the top level)."""
        doc = self.model_dump(mode="json")
        return {"winner": self.verdict.winner, **doc}


def _tell(options: ChooseOptions, stage: str, message: str) -> None:
    if options.on_event is not None:
        options.on_event(stage, message)


# -- candidates -----------------------------------------------------------------------


def _how_to_run(card: Any, quant: str | None) -> list[str]:
    """Ways to make a catalog model runnable here (a -m spec, llmpick.yaml snippets)."""
    slug = card.id.split("/")[-1].lower()
    ways = []
    gguf = card.hub_gguf
    if gguf is not None:
        ways.append(f"llmpick choose -m llamacpp:{gguf.repo}@{gguf.filename}  (downloads the GGUF)")
        ways.append(
            "llmpick.yaml:\n"
            f"models:\n  {slug}:\n    backend: llamacpp\n    model: {gguf.filename}\n"
            f"    options: {{hf_repo: {gguf.repo}}}\n    catalog_id: {card.id}"
        )
        ways.append(
            f"Ollama: ollama pull hf.co/{gguf.repo}:{gguf.quant}, then in llmpick.yaml:\n"
            f"models:\n  {slug}:\n    backend: openai\n    model: hf.co/{gguf.repo}:{gguf.quant}\n"
            f"    base_url: http://127.0.0.1:11434/v1\n    catalog_id: {card.id}"
        )
    ways.append(
        f"vLLM: vllm serve {card.id}"
        + (f" (this shortlist assumed {quant})" if quant else "")
        + ", then in llmpick.yaml:\n"
        f"models:\n  {slug}:\n    backend: openai\n    model: {card.id}\n"
        f"    base_url: http://127.0.0.1:8000/v1\n    catalog_id: {card.id}"
    )
    return ways


def _candidates(
    context: Any, options: ChooseOptions, rec: Recommendation, catalog: Any
) -> tuple[list[CandidateStatus], list[ModelSpec]]:
    statuses: list[CandidateStatus] = []
    specs: list[ModelSpec] = []

    def add(spec: ModelSpec, origin: Any, catalog_id: str | None, in_shortlist: bool) -> None:
        if any(s.name == spec.name for s in specs):
            return
        specs.append(spec)
        statuses.append(
            CandidateStatus(
                name=spec.name,
                catalog_id=catalog_id,
                origin=origin,
                in_shortlist=in_shortlist,
                status="evaluated",
            )
        )

    config_models = context.settings.config.models
    for cand in rec.candidates:
        wanted = cand.id.lower()
        local = [n for n, m in config_models.items() if (m.catalog_id or "").lower() == wanted]
        local += [b.name for b in BUNDLED_MODELS.values() if b.catalog_id.lower() == wanted]
        for name in local:
            origin = "config" if name in config_models else "bundled"
            add(context.resolve(name), origin, cand.id, True)
        if not local:
            statuses.append(
                CandidateStatus(
                    name=cand.id,
                    catalog_id=cand.id,
                    origin="shortlist",
                    in_shortlist=True,
                    status="not-runnable",
                    how_to_run=_how_to_run(catalog.get(cand.id), cand.quant),
                )
            )
    for text in options.models:
        spec = context.resolve(text)  # an unknown model is bad input: it raises
        add(spec, "user", spec.catalog_id, False)
    if not specs:
        for bundled in BUNDLED_MODELS.values():
            add(context.resolve(bundled.name), "bundled", bundled.catalog_id, False)
    return statuses, specs


def _probe(context: Any, spec: ModelSpec) -> dict[str, Any]:
    """Load the model once; return its identity (raises whatever loading raises)."""
    import asyncio

    backend = context.open_backend(spec)
    try:
        identity: dict[str, Any] = backend.describe().model_dump(mode="json")
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(backend.aclose())
    return identity


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, LlmpickError):
        return exc.one_line()
    return f"{type(exc).__name__}: {exc}".strip()


# -- bench, cached by identity + settings ------------------------------------------------


def _bench(
    context: Any, options: ChooseOptions, spec: ModelSpec, identity: dict[str, Any], store: Any
) -> tuple[dict[str, Any], bool]:
    """Return (bench document, reused?) for one model; measures only when not stored."""
    from llmpick.bench import BenchConfig, run_bench, save_bench
    from llmpick.bench.runner import config_summary

    config = BenchConfig(
        concurrency=tuple(sorted({1, options.concurrency})),
        prompt_tokens=options.bench_prompt_tokens,
        max_tokens=options.bench_max_tokens,
        requests=options.bench_requests,
        warmup=1,
        seed=options.seed,
        progress=lambda message: _tell(options, "bench", f"{spec.name}: {message}"),
    )
    settings = config_summary(config)
    key = sha256_text(json.dumps({"identity": identity, "settings": settings}, sort_keys=True))
    for row in store.db.execute(
        "SELECT config, result FROM bench_runs WHERE interrupted = 0 ORDER BY created_at DESC"
    ).fetchall():
        with contextlib.suppress(ValueError, TypeError):
            if json.loads(row["config"]).get("choose_key") == key:
                found: dict[str, Any] = json.loads(row["result"])
                return found, True
    result = run_bench(context, spec, config)
    save_bench(store, result, {**settings, "choose_key": key})
    return result.to_json(), False


def _performance(bench: dict[str, Any], eval_model: Any) -> dict[str, Any]:
    first = (bench.get("results") or [{}])[0]
    estimate = bench.get("estimate") or {}
    return {
        "device": bench.get("device"),
        "measured": {
            "time_to_first_token_s_p50": (first.get("time_to_first_token_s") or {}).get("p50"),
            "time_per_output_token_s_p50": (first.get("time_per_output_token_s") or {}).get("p50"),
            "output_tokens_per_second": first.get("output_tokens_per_second"),
            "peak_memory_bytes": bench.get("peak_memory_bytes"),
            "eval_latency_p50_s": eval_model.latency_s.p50 if eval_model else None,
            "eval_latency_p90_s": eval_model.latency_s.p90 if eval_model else None,
        },
        "estimated": {
            "decode_tokens_per_second": estimate.get("decode_tokens_per_second"),
            "time_to_first_token_s": estimate.get("time_to_first_token_s"),
            "total_bytes": estimate.get("total_bytes"),
            "basis": estimate.get("basis"),
        },
        "ratio": bench.get("ratio") or {},
        "settings": {
            "prompt_tokens": bench.get("prompt_tokens"),
            "max_tokens": bench.get("max_tokens"),
            "requests": first.get("completed"),
        },
        "notes": bench.get("notes", []),
        "bench": bench,
    }


# -- ranking and verdict ---------------------------------------------------------------------


def _row_scores(cells: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, list[float]]] = {}
    for cell in cells:
        if cell["score"] is not None:
            table.setdefault(cell["model"], {}).setdefault(cell["row_id"], []).append(cell["score"])
    return {m: {r: sum(v) / len(v) for r, v in rows.items()} for m, rows in table.items()}


def _pareto(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names not dominated: no other point has quality >= and cost <= with one strict."""
    front = []
    for name, (quality, cost) in points.items():
        dominated = any(
            q >= quality and c <= cost and (q > quality or c < cost)
            for other, (q, c) in points.items()
            if other != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: -points[n][0])


def _rank(
    evaluation: Any, performance: dict[str, dict[str, Any]], cost: dict[str, CostRow], w: Weights
) -> list[RankedModel]:
    weights = w.normalised()
    costs = [c.usd_per_mtok for c in cost.values() if c.usd_per_mtok]
    cheapest = min(costs) if costs else None
    ranked = []
    for name, summary in evaluation.models.items():
        if summary.mean is None:
            continue
        perf = performance.get(name, {})
        tps = (perf.get("measured") or {}).get("output_tokens_per_second")
        row = cost.get(name)
        usd = row.usd_per_mtok if row else None
        speed = tps / (tps + SPEED_HALF_POINT_TPS) if tps else 0.0
        cost_score = cheapest / usd if usd and cheapest else 0.0
        ranked.append(
            RankedModel(
                model=name,
                rank=0,
                quality=summary.mean,
                quality_ci95=summary.ci95,
                n=summary.n,
                output_tokens_per_second=tps,
                speed_kind="measured" if tps else None,
                latency_p50_s=summary.latency_s.p50,
                usd_per_mtok=usd,
                quality_score=summary.mean,
                speed_score=round(speed, 4),
                cost_score=round(cost_score, 4),
                weighted_score=round(
                    weights.quality * summary.mean
                    + weights.speed * speed
                    + weights.cost * cost_score,
                    4,
                ),
            )
        )
    ranked.sort(key=lambda r: (-r.weighted_score, -(r.quality or 0), r.model))
    for index, item in enumerate(ranked, start=1):
        item.rank = index
    return ranked


def _verdict(
    ranked: list[RankedModel], evaluation: Any, row_scores: dict[str, dict[str, float]]
) -> Verdict:
    from llmpick.evaluate.stats import prompts_needed

    if not ranked:
        return Verdict(status="none", sentence="no candidate produced scores; see the failures")
    top = ranked[0]
    if len(ranked) == 1:
        return Verdict(
            status="single",
            leader=top.model,
            sentence=f"only {top.model} produced scores here, so there is nothing to compare "
            "it with; add candidates with -m or llmpick.yaml",
        )
    by_pair = {frozenset((c.a, c.b)): c for c in evaluation.comparisons}
    tied: list[str] = []
    better_elsewhere: list[str] = []
    needed: dict[str, int | None] = {}
    sentences = []
    for other in ranked[1:]:
        comp = by_pair.get(frozenset((top.model, other.model)))
        if comp is None:
            tied.append(other.model)
            continue
        sentences.append(comp.sentence)
        top_wins = comp.wins_a if comp.a == top.model else comp.wins_b
        other_wins = comp.wins_b if comp.a == top.model else comp.wins_a
        if comp.significant and top_wins > other_wins:
            continue
        if comp.significant:
            better_elsewhere.append(other.model)
        else:
            tied.append(other.model)
            needed[other.model] = prompts_needed(
                row_scores.get(top.model, {}), row_scores.get(other.model, {})
            )
    if not tied and not better_elsewhere:
        return Verdict(
            status="winner",
            winner=top.model,
            leader=top.model,
            sentence=f"{top.model} wins: highest weighted score ({top.weighted_score:.3f}) and "
            "better quality than every other candidate in paired comparisons: "
            + "; ".join(sentences),
            comparisons=sentences,
        )
    if better_elsewhere:
        return Verdict(
            status="trade-off",
            leader=top.model,
            sentence=f"{top.model} ranks first by your weights ({top.weighted_score:.3f}) on "
            f"speed and cost, but {', '.join(better_elsewhere)} scored better on quality "
            "with a significant difference: choose by what matters more to you",
            tied=tied,
            prompts_needed=needed,
            comparisons=sentences,
        )
    more = [
        f"{m}: no difference observed"
        if n is None
        else (f"{m}: about {n} more prompts" if n else f"{m}: a few more prompts")
        for m, n in needed.items()
    ]
    return Verdict(
        status="tied",
        leader=top.model,
        sentence=f"no winner yet: {top.model} leads on the weighted score "
        f"({top.weighted_score:.3f}) but its quality is not distinguishable from "
        f"{', '.join(tied)}" + (f" (roughly, to decide: {'; '.join(more)})" if more else ""),
        tied=[top.model, *tied],
        prompts_needed=needed,
        comparisons=sentences,
    )


# -- the pipeline ---------------------------------------------------------------------------------


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


def choose(context: Any, options: ChooseOptions) -> ChooseResult:
    """Run the whole pipeline and return the result (write it with :mod:`llmpick.report`).

    Raises llmpick errors for bad input (missing data, unknown model or device,
    bad scorer); a candidate that fails to load or generate is reported, not raised.
    """
    from llmpick.catalog import load_catalog
    from llmpick.evaluate import RunOptions, cell_rows, load_dataset, run_eval, side_by_side
    from llmpick.hardware import detect_local, get_device
    from llmpick.store import open_store

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
    rec = recommend(constraints, catalog)
    statuses, specs = _candidates(context, options, rec, catalog)
    timing["shortlist_s"] = time.perf_counter() - started

    identities: dict[str, dict[str, Any]] = {}
    alive: list[ModelSpec] = []
    for spec, status in zip(specs, [s for s in statuses if s.status == "evaluated"], strict=True):
        _tell(options, "probe", f"loading {spec.name}")
        try:
            identities[spec.name] = _probe(context, spec)
            status.identity = identities[spec.name]
            alive.append(spec)
        except Exception as exc:  # a candidate that cannot load is reported, not fatal
            status.status = "failed"
            status.error = _error_text(exc)
            warnings.append(f"{spec.name} failed to load: {status.error}")
    timing["probe_s"] = time.perf_counter() - started - sum(timing.values())

    store = open_store(options.db_path)
    evaluation = None
    samples: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    row_scores: dict[str, dict[str, float]] = {}
    cells: list[dict[str, Any]] = []
    performance: dict[str, dict[str, Any]] = {}
    try:
        if alive:
            _tell(options, "evaluate", f"{len(alive)} model(s) x {len(dataset.rows)} prompts")
            evaluation = run_eval(
                context,
                dataset,
                list(alive),
                scorers=_pick_scorers(options, dataset),
                params=SamplingParams(
                    max_tokens=options.max_tokens, temperature=0.0, seed=options.seed
                ),
                db_path=options.db_path,
                options=RunOptions(
                    judge=options.judge,
                    progress=options.progress,
                    on_warning=lambda text: _tell(options, "warning", text),
                ),
            )
            warnings += evaluation.warnings
            cells = cell_rows(store, evaluation.run_id)
            row_scores = _row_scores(cells)
            samples = _samples(side_by_side(store, evaluation.run_id, width=600), dataset)
            failures = _failures(cells)
            for status in statuses:
                summary = evaluation.models.get(status.name)
                if summary is not None and summary.n == 0 and summary.errors:
                    first = next(c["error"] for c in cells if c["model"] == status.name)
                    status.status = "failed"
                    status.error = f"every generation failed: {first}"
        timing["evaluate_s"] = time.perf_counter() - started - sum(timing.values())
        for spec in alive:
            status = next(s for s in statuses if s.name == spec.name)
            if status.status == "failed":
                continue
            _tell(options, "bench", f"measuring {spec.name}")
            try:
                bench, reused = _bench(context, options, spec, identities[spec.name], store)
            except Exception as exc:  # a failed measurement is reported, not fatal
                performance[spec.name] = {"error": _error_text(exc)}
                warnings.append(f"bench of {spec.name} failed: {_error_text(exc)}")
                continue
            summary = evaluation.models.get(spec.name) if evaluation else None
            performance[spec.name] = {**_performance(bench, summary), "reused": reused}
        timing["bench_s"] = time.perf_counter() - started - sum(timing.values())
    finally:
        store.close()

    _tell(options, "rank", "ranking")
    here = detect_local()
    cost_here: dict[str, CostRow] = {}
    hourly_here = hourly_price(here, options.gpu_hourly_usd)
    for name, perf in performance.items():
        bench_doc = perf.get("bench")
        status = next(s for s in statuses if s.name == name)
        card = catalog.find(status.catalog_id) if status.catalog_id else None
        throughput = measured_throughput(bench_doc, options.concurrency) if bench_doc else None
        cost_here[name] = self_hosted_row(name, here, throughput, hourly_here, card)
    cost_rows = list(cost_here.values())
    target = rec.device
    target_device = get_device(options.device) if options.device else here
    hourly_target = hourly_price(target_device, options.gpu_hourly_usd)
    for cand in rec.candidates:
        throughput = estimate_throughput(
            cand.id, target_device, options.concurrency, quant=cand.quant, context=rec.context
        )
        cost_rows.append(
            self_hosted_row(cand.id, target_device, throughput, hourly_target, catalog.get(cand.id))
        )
    ranking: list[RankedModel] = []
    verdict = Verdict(status="none", sentence="no candidate could run here; see how to run them")
    pareto: dict[str, list[str]] = {}
    if evaluation is not None:
        ranking = _rank(evaluation, performance, cost_here, options.weights)
        verdict = _verdict(ranking, evaluation, row_scores)
        if verdict.status == "none":
            verdict.sentence = _why_unscored(cells)
        latency = {
            r.model: (r.quality or 0.0, r.latency_p50_s)
            for r in ranking
            if r.latency_p50_s is not None
        }
        pareto["quality_latency"] = _pareto({k: (q, float(v)) for k, (q, v) in latency.items()})
        dollars = {r.model: (r.quality or 0.0, r.usd_per_mtok) for r in ranking if r.usd_per_mtok}
        pareto["quality_cost"] = _pareto({k: (q, float(v)) for k, (q, v) in dollars.items()})
    timing["total_s"] = time.perf_counter() - started
    return ChooseResult(
        constraints={**constraints.model_dump(mode="json"), "device_resolved": target},
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
        evaluation=evaluation.model_dump(mode="json") if evaluation else None,
        samples=samples,
        failures=failures,
        performance={
            k: {x: y for x, y in v.items() if x != "bench"} for k, v in performance.items()
        },
        cost=cost_rows,
        ranking=ranking,
        verdict=verdict,
        pareto=pareto,
        timing_s={k: round(v, 2) for k, v in timing.items()},
        warnings=warnings,
    )


def _why_unscored(cells: list[dict[str, Any]]) -> str:
    """Say why no model got a score: failed generations, or a scorer that gave no values."""
    reasons = [
        (key, f"{s['label']}: {s['explanation'][:160]}")
        for c in cells
        for key, s in c["scores"].items()
        if s.get("value") is None and s.get("explanation")
    ]
    if reasons:
        return (
            f"no candidate produced scores: the scorer {reasons[0][0]} gave no values, "
            f"e.g. {reasons[0][1]}; choose another --scorer or a stronger --judge"
        )
    return "no candidate produced scores; see the failures"


def _samples(
    table: list[dict[str, Any]], dataset: Any, per_category: int = 2
) -> list[dict[str, Any]]:
    """A few rows per category, for the side-by-side view."""
    categories = {r.id: r.category or "" for r in dataset.rows}
    taken: dict[str, int] = {}
    picked = []
    for line in table:
        category = categories.get(line["row_id"], "")
        if taken.get(category, 0) < per_category:
            taken[category] = taken.get(category, 0) + 1
            picked.append({"category": category, **line})
    return picked


def _failures(cells: list[dict[str, Any]], limit: int = 40) -> list[dict[str, Any]]:
    """Cells that errored or scored below 1, with the scorer's explanation."""
    out = []
    for cell in cells:
        if cell["error"] is None and (cell["score"] is None or cell["score"] >= 1.0):
            continue
        explanation = next(
            (s["explanation"] for s in cell["scores"].values() if s.get("explanation")), ""
        )
        out.append(
            {
                "row_id": cell["row_id"],
                "category": cell["category"],
                "model": cell["model"],
                "expected": cell["expected"],
                "output": (cell["output"] or "")[:400],
                "score": cell["score"],
                "why": cell["error"] or explanation,
            }
        )
    out.sort(key=lambda c: (c["row_id"], c["model"]))
    return out[:limit]


def check_options(options: ChooseOptions) -> None:
    """Fail fast on inputs that would only fail after models load."""
    if options.data is not None and not Path(options.data).exists():
        from llmpick.errors import DataError

        raise DataError(f"data file {options.data} does not exist", "check the --data path")
    if options.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
