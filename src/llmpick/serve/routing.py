"""Routes from measured results: which model answers which kind of request.

``--routes-from`` names a ``choose`` result (its ``result.json``) or an eval run id.
For every task category in the run's data the route lists the models in the order
their mean primary score ranks them; the first is the winner, the rest fallbacks.
When the paired test on the category's prompts does not separate the two best
(p ≥ 0.05), the evidence says they are equal: the faster one (lower measured p50
latency) goes first, and the route says so. The overall route (``auto`` when a
request's category is unknown) ranks the same way over all prompts.

Requests on ``auto`` are classified (:mod:`llmpick.serve.classifier`); a client can
also name the category (header ``x-llmpick-category`` or ``metadata.category``).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from llmpick.backends.spec import ModelSpec
from llmpick.errors import ConfigError
from llmpick.evaluate.results import EvalResult, primary_row_means, summarize
from llmpick.evaluate.stats import compare_pair
from llmpick.serve.classifier import CategoryClassifier, ClassifierReport
from llmpick.store import Store

__all__ = ["CategoryRoute", "Decision", "RouteTable", "load_route_table", "routes_from_run"]

SCHEMA_VERSION = 1


class CategoryRoute(BaseModel):
    """Models for one category, best first, with the evidence for the order."""

    category: str
    models: list[str]
    n: int
    means: dict[str, float | None]
    ci95: dict[str, tuple[float, float] | None]
    comparison: str | None = None
    p_value: float | None = None
    separated: bool = False
    reason: str


class RouteTable(BaseModel):
    """What the gateway routes on: per-category and overall model orders."""

    schema_version: int = SCHEMA_VERSION
    source: str
    run_id: str | None = None
    specs: dict[str, ModelSpec] = Field(default_factory=dict)
    overall: CategoryRoute
    categories: dict[str, CategoryRoute] = Field(default_factory=dict)
    classifier: ClassifierReport | None = None


class Decision(BaseModel):
    """Where one request goes and why (the ``x-llmpick-route`` header)."""

    route: str
    category: str | None
    models: list[str]
    reason: str

    def header(self) -> str:
        """``route=auto; category=code; model=a; reason=...`` (ASCII, one line)."""
        parts = [f"route={self.route}"]
        if self.category:
            parts.append(f"category={self.category}")
        parts.append(f"reason={self.reason}")
        return "; ".join(parts).encode("ascii", "replace").decode("ascii")


def _order(
    name: str,
    result: EvalResult,
    means: dict[str, float | None],
    ci95: dict[str, tuple[float, float] | None],
    rows: dict[str, dict[str, float]],
    n: int,
) -> CategoryRoute:
    """Rank by mean; if the top two are not separated, the faster goes first."""
    latency = {m: (s.latency_s.p50 or float("inf")) for m, s in result.models.items()}
    ranked = sorted(
        (m for m in means if means[m] is not None), key=lambda m: (-(means[m] or 0.0), latency[m])
    )
    unscored = [m for m in means if means[m] is None]
    if len(ranked) < 2:
        reason = f"{ranked[0]} is the only scored model" if ranked else "no scores"
        return CategoryRoute(
            category=name, models=ranked + unscored, n=n, means=means, ci95=ci95, reason=reason
        )
    first, second = ranked[0], ranked[1]
    test = compare_pair(rows.get(first, {}), rows.get(second, {}), a=first, b=second)
    if test.significant:
        reason = f"{first} wins: {test.sentence}"
    else:
        faster, slower = sorted((first, second), key=lambda m: latency[m])
        ranked[0], ranked[1] = faster, slower
        reason = (
            f"{test.sentence}; {faster} goes first as the faster one"
            f" (p50 latency {latency[faster]:.2f} s vs {latency[slower]:.2f} s)"
        )
    return CategoryRoute(
        category=name,
        models=ranked + unscored,
        n=n,
        means=means,
        ci95=ci95,
        comparison=test.sentence,
        p_value=test.p_value,
        separated=test.significant,
        reason=reason,
    )


def routes_from_run(store: Store, run_id: str, source: str | None = None) -> RouteTable:
    """Per-category winners of an eval run, plus a classifier trained on its prompts."""
    result = summarize(store, run_id)
    run = store.get_run(run_id)
    row_means = primary_row_means(store, run_id)
    rows = store.get_rows(run_id)
    specs = {m["name"]: ModelSpec.model_validate(m["spec"]) for m in run.models}
    overall = _order(
        "overall",
        result,
        {m: s.mean for m, s in result.models.items()},
        {m: s.ci95 for m, s in result.models.items()},
        row_means,
        len(rows),
    )
    categories: dict[str, CategoryRoute] = {}
    for category, per_model in result.categories.items():
        ids = {r.row_id for r in rows if r.category == category}
        in_category = {m: {k: v for k, v in rm.items() if k in ids} for m, rm in row_means.items()}
        categories[category] = _order(
            category,
            result,
            {m: s.mean for m, s in per_model.items()},
            {m: s.ci95 for m, s in per_model.items()},
            in_category,
            len(ids),
        )
    table = RouteTable(
        source=source or f"run {run_id}",
        run_id=run_id,
        specs=specs,
        overall=overall,
        categories=categories,
    )
    return table


def train_classifier(store: Store, table: RouteTable) -> CategoryClassifier | None:
    """Fit the ``auto`` classifier on the run's prompts (last user message) and labels."""
    if table.run_id is None or not table.categories:
        return None
    prompts, labels = [], []
    for row in store.get_rows(table.run_id):
        users = [m["content"] for m in row.messages if m.get("role") == "user"]
        if row.category and users:
            prompts.append(users[-1])
            labels.append(row.category)
    if not prompts:
        return None
    classifier = CategoryClassifier()
    table.classifier = classifier.fit(prompts, labels)
    return classifier


def load_route_table(source: str, store: Store) -> RouteTable:
    """``source``: a choose ``result.json`` (or its folder), or an eval run id."""
    path = Path(source)
    if path.is_dir():
        path = path / "result.json"
    if path.suffix == ".json" or path.exists():
        if not path.exists():
            raise ConfigError(
                f"no routes file at {path}", "run 'llmpick choose' first, or pass a run id"
            )
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}", "pass a choose result.json") from exc
        run_id = (doc.get("evaluation") or {}).get("run_id") or doc.get("run_id")
        if not run_id:
            raise ConfigError(
                f"{path} holds no evaluation run",
                "pass the result.json of a choose run that evaluated models, or a run id",
            )
        return routes_from_run(store, str(run_id), source=str(path))
    return routes_from_run(store, source)
