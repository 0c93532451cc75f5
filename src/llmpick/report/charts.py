"""Plotly charts for the ``choose`` report, as HTML fragments without plotly.js.

The page includes plotly.js once, inline (:func:`plotly_js`), so the report is
one self-contained file that opens offline and makes no request. Each chart's
title says whether its figures are measured or estimated.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "category_chart",
    "memory_chart",
    "pareto_chart",
    "plotly_js",
    "quality_chart",
    "speed_chart",
]

_CONFIG = {"displaylogo": False, "responsive": True}
_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "height": 360,
    "margin": {"l": 60, "r": 20, "t": 60, "b": 60},
    "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 13},
}


def plotly_js() -> str:
    """The plotly.js bundle, to inline once in the page head."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def _html(fig: Any) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config=_CONFIG))


def quality_chart(ranking: list[dict[str, Any]], scorer: str | None) -> str:
    """Mean score per model with its 95% bootstrap interval (measured)."""
    import plotly.graph_objects as go

    names = [r["model"] for r in ranking]
    means = [r["quality"] for r in ranking]
    lows = [(r["quality"] - r["quality_ci95"][0]) if r["quality_ci95"] else 0 for r in ranking]
    highs = [(r["quality_ci95"][1] - r["quality"]) if r["quality_ci95"] else 0 for r in ranking]
    fig = go.Figure(
        go.Bar(
            x=[f"{n} ({m:.2f})" for n, m in zip(names, means, strict=True)],
            y=means,
            error_y={"type": "data", "array": highs, "arrayminus": lows, "visible": True},
            marker_color="#3b6fb6",
        )
    )
    fig.update_layout(
        title=f"Quality on your data (measured; {scorer or 'score'}, 95% bootstrap interval)",
        yaxis={"range": [0, 1.1], "title": "mean score"},
        **_LAYOUT,
    )
    return _html(fig)


def category_chart(categories: dict[str, dict[str, dict[str, Any]]], models: list[str]) -> str:
    """Mean score per category and model (measured)."""
    import plotly.graph_objects as go

    names = sorted(categories)
    fig = go.Figure()
    for model in models:
        values = [(categories[c].get(model) or {}).get("mean") for c in names]
        counts = [(categories[c].get(model) or {}).get("n", 0) for c in names]
        fig.add_trace(
            go.Bar(
                name=model,
                x=names,
                y=values,
                text=["—" if v is None else f"{v:.2f}" for v in values],
                textposition="outside",
                hovertext=[f"n = {n}" for n in counts],
            )
        )
    fig.update_layout(
        title="Quality per category (measured; mean score)",
        barmode="group",
        yaxis={"range": [0, 1.15], "title": "mean score"},
        **_LAYOUT,
    )
    return _html(fig)


def pareto_chart(
    points: dict[str, tuple[float, float]], front: list[str], x_title: str, title: str
) -> str:
    """Quality against a cost (latency or dollars); the Pareto front joined by a line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    names = list(points)
    fig.add_trace(
        go.Scatter(
            x=[points[n][1] for n in names],
            y=[points[n][0] for n in names],
            mode="markers+text",
            text=names,
            textposition="top center",
            marker={
                "size": 14,
                "color": ["#d9822b" if n in front else "#8a99ad" for n in names],
            },
            name="candidates",
        )
    )
    ordered = sorted(front, key=lambda n: points[n][1])
    if len(ordered) > 1:
        fig.add_trace(
            go.Scatter(
                x=[points[n][1] for n in ordered],
                y=[points[n][0] for n in ordered],
                mode="lines",
                line={"dash": "dot", "color": "#d9822b"},
                name="Pareto front",
            )
        )
    widest = max((points[n][1] for n in names), default=1.0) or 1.0
    fig.update_layout(
        title=title,
        # room on both sides for the labels above the points
        xaxis={"title": x_title, "range": [-0.2 * widest, 1.3 * widest]},
        yaxis={"title": "mean score", "range": [-0.05, 1.22]},
        showlegend=False,
        **_LAYOUT,
    )
    return _html(fig)


def speed_chart(performance: dict[str, dict[str, Any]]) -> str:
    """Decode tokens/s measured here (1 / TPOT) beside the fit estimate."""
    import plotly.graph_objects as go

    names = [n for n, p in performance.items() if "measured" in p]
    measured = []
    for n in names:
        tpot = performance[n]["measured"].get("time_per_output_token_s_p50")
        measured.append(1.0 / tpot if tpot else None)
    estimated = [performance[n]["estimated"].get("decode_tokens_per_second") for n in names]
    fig = go.Figure(
        [
            go.Bar(name="measured (1 / TPOT p50)", x=names, y=measured, marker_color="#3b6fb6"),
            go.Bar(name="estimated (llmpick fit)", x=names, y=estimated, marker_color="#c7cfdb"),
        ]
    )
    fig.update_layout(
        title="Decode speed: measured here vs estimated",
        barmode="group",
        yaxis={"title": "tokens/s per sequence"},
        **_LAYOUT,
    )
    return _html(fig)


def memory_chart(performance: dict[str, dict[str, Any]]) -> str:
    """Peak memory measured while the model ran, beside the fit estimate (MiB)."""
    import plotly.graph_objects as go

    names = [n for n, p in performance.items() if "measured" in p]

    def mib(value: Any) -> float | None:
        return None if value is None else value / 2**20

    fig = go.Figure(
        [
            go.Bar(
                name="measured peak",
                x=names,
                y=[mib(performance[n]["measured"].get("peak_memory_bytes")) for n in names],
                marker_color="#3b6fb6",
            ),
            go.Bar(
                name="estimated total (llmpick fit)",
                x=names,
                y=[mib(performance[n]["estimated"].get("total_bytes")) for n in names],
                marker_color="#c7cfdb",
            ),
        ]
    )
    fig.update_layout(
        title="Memory: measured peak vs estimated",
        barmode="group",
        yaxis={"title": "MiB"},
        **_LAYOUT,
    )
    return _html(fig)
