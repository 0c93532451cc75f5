"""What a run produced: summaries with intervals, comparisons, and per-cell tables.

:func:`summarize` reads a run back from the store and builds the
:class:`EvalResult` that ``llmpick eval --format json`` prints; every figure in
it is measured on this run (the intervals are bootstrap estimates over its
rows). :func:`cell_rows` and :func:`side_by_side` give the per-cell views of
``llmpick results``.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, Field

from llmpick.store import CellRecord, RunRecord, ScoreRecord, Store

__all__ = [
    "CategorySummary",
    "ComparisonSummary",
    "EvalResult",
    "LatencySummary",
    "ModelSummary",
    "ScoreSummary",
    "cell_rows",
    "primary_row_means",
    "rows_to_csv",
    "rows_to_markdown",
    "side_by_side",
    "summarize",
]


class LatencySummary(BaseModel):
    """End-to-end seconds per generated cell (measured)."""

    p50: float | None = None
    p90: float | None = None
    mean: float | None = None
    time_to_first_token_p50: float | None = None


class ScoreSummary(BaseModel):
    """Mean of one scorer's values with a 95% bootstrap interval."""

    n: int
    mean: float | None
    ci95: tuple[float, float] | None


class ModelSummary(BaseModel):
    """One model's results on the run's primary scorer, plus latency and cost."""

    n: int
    mean: float | None
    ci95: tuple[float, float] | None
    latency_s: LatencySummary
    cost_usd: float | None
    errors: int = 0
    scores: dict[str, ScoreSummary] = Field(default_factory=dict)


class ComparisonSummary(BaseModel):
    """A paired comparison of two models on the rows both were scored on."""

    a: str
    b: str
    n: int
    wins_a: int
    wins_b: int
    ties: int
    p_value: float | None
    test: str
    #: mean of (a - b) over the shared rows
    mean_diff: float | None = None
    significant: bool = False
    sentence: str


class CategorySummary(BaseModel):
    """A model's primary-scorer mean within one category."""

    n: int
    mean: float | None
    ci95: tuple[float, float] | None


class EvalResult(BaseModel):
    """The result of ``llmpick eval``: the JSON it prints, and the library's return value."""

    run_id: str
    cells_total: int
    cells_cached: int
    models: dict[str, ModelSummary]
    comparisons: list[ComparisonSummary]
    categories: dict[str, dict[str, CategorySummary]]
    scorer: str | None = None
    pairwise: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list)
    #: seconds of wall time this invocation spent and the part of it inside
    #: generations; not part of the JSON (it describes the invocation, not the run)
    timing: dict[str, float] = Field(default_factory=dict, exclude=True)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _mean_ci(values: list[float]) -> tuple[float | None, tuple[float, float] | None]:
    if not values:
        return None, None
    from llmpick.evaluate.stats import mean_ci

    ci = mean_ci(values)
    return float(ci.mean), (float(ci.low), float(ci.high))


def _primary(run: RunRecord, scores: list[ScoreRecord]) -> str | None:
    """Pick the first of the run's scorers that gave numeric values."""
    from llmpick.evaluate.scorers.base import ScorerSpec
    from llmpick.evaluate.scoring import scorer_key

    numeric = {s.scorer_key for s in scores if s.value is not None}
    for raw in run.scorers:
        key = scorer_key(ScorerSpec.model_validate(raw))
        if key in numeric:
            return key
    return min(numeric) if numeric else None


def _row_means(cells: list[CellRecord], values: dict[int, float], model: str) -> dict[str, float]:
    """Per row, the model's mean value over repeats (the unit of pairing)."""
    per_row: dict[str, list[float]] = defaultdict(list)
    for cell in cells:
        if cell.model == model and cell.id in values:
            per_row[cell.row_id].append(values[cell.id])
    return {row: statistics.fmean(v) for row, v in per_row.items()}


def summarize(
    store: Store,
    run_id: str,
    cells_cached: int | None = None,
    warnings: list[str] | None = None,
) -> EvalResult:
    """Build the run's :class:`EvalResult` from what the store holds."""
    from llmpick.evaluate.stats import compare_pair

    run = store.get_run(run_id)
    cells = store.get_cells(run.id)
    scores = store.get_scores(run.id)
    model_names = [m["name"] for m in run.models]
    primary = _primary(run, scores)
    by_scorer: dict[str, dict[int, float]] = defaultdict(dict)
    for s in scores:
        if s.value is not None:
            by_scorer[s.scorer_key][s.cell_id] = s.value
    main = by_scorer.get(primary or "", {})
    rows = {r.row_id: r for r in store.get_rows(run.id)}

    models: dict[str, ModelSummary] = {}
    for name in model_names:
        mine = [c for c in cells if c.model == name]
        done = [c for c in mine if c.error is None and c.latency_s is not None]
        values = [main[c.id] for c in mine if c.id in main]
        mean, ci = _mean_ci(values)
        latencies = [c.latency_s for c in done if c.latency_s is not None]
        ttfts = [c.time_to_first_token_s for c in done if c.time_to_first_token_s is not None]
        costs = [c.cost_usd for c in done if c.cost_usd is not None]
        per_scorer = {}
        for key, table in by_scorer.items():
            vals = [table[c.id] for c in mine if c.id in table]
            if vals:
                m, c95 = _mean_ci(vals)
                per_scorer[key] = ScoreSummary(n=len(vals), mean=m, ci95=c95)
        models[name] = ModelSummary(
            n=len(values),
            mean=mean,
            ci95=ci,
            latency_s=LatencySummary(
                p50=_quantile(latencies, 0.5),
                p90=_quantile(latencies, 0.9),
                mean=statistics.fmean(latencies) if latencies else None,
                time_to_first_token_p50=_quantile(ttfts, 0.5),
            ),
            cost_usd=math.fsum(costs) if costs else None,
            errors=sum(1 for c in mine if c.error is not None),
            scores=per_scorer,
        )

    comparisons: list[ComparisonSummary] = []
    row_means = {name: _row_means(cells, main, name) for name in model_names}
    for i, a in enumerate(model_names):
        for b in model_names[i + 1 :]:
            if not set(row_means[a]) & set(row_means[b]):
                continue
            result = compare_pair(row_means[a], row_means[b], a=a, b=b)
            comparisons.append(
                ComparisonSummary(
                    a=a,
                    b=b,
                    n=result.n,
                    wins_a=result.wins_a,
                    wins_b=result.wins_b,
                    ties=result.ties,
                    p_value=result.p_value,
                    test=result.test,
                    mean_diff=result.mean_diff,
                    significant=result.significant,
                    sentence=result.sentence,
                )
            )

    categories: dict[str, dict[str, CategorySummary]] = {}
    names = sorted({r.category for r in rows.values() if r.category})
    for category in names:
        categories[category] = {}
        for name in model_names:
            vals = [
                main[c.id]
                for c in cells
                if c.model == name and c.id in main and rows[c.row_id].category == category
            ]
            m, c95 = _mean_ci(vals)
            categories[category][name] = CategorySummary(n=len(vals), mean=m, ci95=c95)

    stored = run.summary or {}
    return EvalResult(
        run_id=run.id,
        cells_total=len(model_names) * len(rows) * run.repeats,
        cells_cached=cells_cached if cells_cached is not None else stored.get("cells_cached", 0),
        models=models,
        comparisons=comparisons,
        categories=categories,
        scorer=primary,
        pairwise=stored.get("pairwise"),
        warnings=warnings if warnings is not None else stored.get("warnings", []),
    )


def _scores_by_cell(scores: list[ScoreRecord]) -> dict[int, dict[str, ScoreRecord]]:
    table: dict[int, dict[str, ScoreRecord]] = defaultdict(dict)
    for s in scores:
        table[s.cell_id][s.scorer_key] = s
    return table


def cell_rows(store: Store, run_id: str) -> list[dict[str, Any]]:
    """One dict per cell: the ``cells`` list of ``llmpick results --format json``.

    ``score`` is the primary scorer's value; ``scores`` holds every scorer's
    value, label and explanation.
    """
    run = store.get_run(run_id)
    scores = store.get_scores(run.id)
    primary = _primary(run, scores)
    table = _scores_by_cell(scores)
    rows = {r.row_id: r for r in store.get_rows(run.id)}
    out = []
    for c in store.get_cells(run.id):
        mine = table.get(c.id, {})
        main = mine.get(primary or "")
        row = rows.get(c.row_id)
        out.append(
            {
                "row_id": c.row_id,
                "model": c.model,
                "repeat": c.repeat,
                "category": row.category if row else None,
                "prompt": row.messages[-1]["content"] if row and row.messages else None,
                "expected": row.expected if row else None,
                "output": c.output,
                "score": main.value if main else None,
                "scores": {
                    k: {"value": s.value, "label": s.label, "explanation": s.explanation}
                    for k, s in mine.items()
                },
                "error": c.error,
                "cached": c.cached,
                "latency_s": c.latency_s,
                "time_to_first_token_s": c.time_to_first_token_s,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "cost_usd": c.cost_usd,
            }
        )
    return out


def side_by_side(store: Store, run_id: str, width: int | None = None) -> list[dict[str, Any]]:
    """Build the spreadsheet view: one row per prompt (and repeat), one column per model.

    Each model gets an output column and a ``MODEL score`` column (primary
    scorer); errors show as ``ERROR: …``. ``width`` truncates long texts.
    """
    run = store.get_run(run_id)
    names = [m["name"] for m in run.models]

    def cut(text: str | None) -> str | None:
        if text is None or width is None or len(text) <= width:
            return text
        return text[: width - 1] + "…"

    by_key: dict[tuple[str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for cell in cell_rows(store, run.id):
        by_key[(cell["row_id"], cell["repeat"])][cell["model"]] = cell
    table = []
    for row in store.get_rows(run.id):
        for repeat in range(run.repeats):
            per_model = by_key.get((row.row_id, repeat), {})
            line: dict[str, Any] = {"row_id": row.row_id}
            if run.repeats > 1:
                line["repeat"] = repeat
            line["prompt"] = cut(row.messages[-1]["content"] if row.messages else "")
            line["expected"] = cut(row.expected)
            for name in names:
                found = per_model.get(name)
                if found is None:
                    line[name] = None
                    line[f"{name} score"] = None
                    continue
                text = f"ERROR: {found['error']}" if found["error"] else found["output"]
                line[name] = cut(text)
                line[f"{name} score"] = found["score"]
            table.append(line)
    return table


def primary_row_means(store: Store, run_id: str) -> dict[str, dict[str, float]]:
    """Per model, row id -> mean of the run's primary score over repeats (for paired tests)."""
    run = store.get_run(run_id)
    cells = store.get_cells(run.id)
    scores = store.get_scores(run.id)
    primary = _primary(run, scores)
    main = {s.cell_id: s.value for s in scores if s.scorer_key == primary and s.value is not None}
    return {m["name"]: _row_means(cells, main, m["name"]) for m in run.models}


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as CSV text (columns from the first row): ``llmpick results --format csv``.

    The workbench's CSV export calls the same function on the same
    :func:`side_by_side` table, so both give identical files for a run.
    """
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def rows_to_markdown(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as a GitHub Markdown table: ``llmpick results --format markdown``."""
    if not rows:
        return ""
    cols = list(rows[0])

    def cell(value: Any) -> str:
        return ("" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
