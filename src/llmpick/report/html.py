"""Render ``report.html`` from a ``result.json`` document (Jinja2 + inline plotly)."""

from __future__ import annotations

import math
from typing import Any

import jinja2

from llmpick.report import charts

__all__ = ["render_html"]


def _bytes(value: Any) -> str:
    if value is None:
        return "—"
    value = float(value)
    if value >= 2**30:
        return f"{value / 2**30:.2f} GiB"
    return f"{value / 2**20:.0f} MiB"


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    value = float(value)
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _usd(value: Any) -> str:
    if value is None:
        return "—"
    return f"${float(value):.3g}" if float(value) < 1 else f"${float(value):,.2f}"


def _interval(ci: Any) -> str:
    if not ci:
        return "—"
    return f"[{_num(ci[0], 2)}, {_num(ci[1], 2)}]"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("llmpick.report", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(bytes=_bytes, num=_num, usd=_usd, interval=_interval)
    return env


def _charts(doc: dict[str, Any]) -> dict[str, str]:
    ranking = doc.get("ranking") or []
    evaluation = doc.get("evaluation") or {}
    performance = {k: v for k, v in (doc.get("performance") or {}).items() if isinstance(v, dict)}
    pareto = doc.get("pareto") or {}
    out: dict[str, str] = {}
    if ranking:
        out["quality"] = charts.quality_chart(ranking, evaluation.get("scorer"))
        latency = {
            r["model"]: (r["quality"], r["latency_p50_s"])
            for r in ranking
            if r.get("latency_p50_s") is not None
        }
        if latency:
            out["pareto_latency"] = charts.pareto_chart(
                latency,
                pareto.get("quality_latency", []),
                "latency per prompt, p50 (s, measured)",
                "Quality vs latency (measured on your data)",
            )
        dollars = {
            r["model"]: (r["quality"], r["usd_per_mtok"]) for r in ranking if r["usd_per_mtok"]
        }
        if dollars:
            out["pareto_cost"] = charts.pareto_chart(
                dollars,
                pareto.get("quality_cost", []),
                "self-hosted $ / 1M output tokens",
                "Quality vs cost",
            )
    categories = evaluation.get("categories") or {}
    if categories and ranking:
        out["categories"] = charts.category_chart(categories, [r["model"] for r in ranking])
    measured = {k: v for k, v in performance.items() if "measured" in v}
    if measured:
        out["speed"] = charts.speed_chart(measured)
        out["memory"] = charts.memory_chart(measured)
    return out


def render_html(doc: dict[str, Any]) -> str:
    """The self-contained HTML report for a ``result.json`` document."""
    template = _environment().get_template("report.html.j2")
    evaluation = doc.get("evaluation") or {}
    models = list((evaluation.get("models") or {}).keys())
    return template.render(
        doc=doc,
        verdict=doc["verdict"],
        evaluation=evaluation,
        models=models,
        charts=_charts(doc),
        plotly_js=charts.plotly_js(),
    )
