"""The table and the chart of a quant sweep: HTML page, PNG image, JSON.

``write_quant_report(report, directory)`` writes ``quant.html`` (the sentence,
the table and the chart, plotly.js inlined so it opens offline),
``quant.png`` (the chart, rendered by kaleido with the local Chrome/Chromium)
and ``quant.json``. Every figure is measured; the page says so.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from llmpick.errors import UsageError
from llmpick.quant.sweep import QuantReport, VariantResult

__all__ = ["quant_chart", "quant_table", "write_quant_report"]


def _ci(v: VariantResult) -> str:
    return f"[{v.quality_ci95[0]:.2f}, {v.quality_ci95[1]:.2f}]" if v.quality_ci95 else "—"


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def quant_table(report: QuantReport) -> list[dict[str, str]]:
    """One row per model (reference first), formatted for a table."""
    rows = []
    for v in report.variants:
        d = v.divergence
        rows.append(
            {
                "variant": v.name,
                "size MB": f"{v.size_bytes / 1e6:.1f}",
                "bits/weight": f"{v.bits_per_weight:.2f}",
                "peak memory MB": _num(
                    None if v.peak_memory_bytes is None else v.peak_memory_bytes / 1e6, ".0f"
                ),
                "decode tok/s": _num(v.decode_tokens_per_second, ".1f"),
                "KLD mean": "0 (reference)"
                if d is None
                else f"{d.kld_mean:.4f} ± {d.kld_mean_uncertainty:.4f}",
                "KLD p99": _num(d.kld_p99 if d else None, ".4f"),
                "same top token %": _num(100 * d.same_top_token if d else None, ".1f"),
                "ΔPPL": _num(d.delta_ppl if d else None, "+.3f"),
                "quality": _num(v.quality_mean, ".3f"),
                "95% CI": _ci(v),
                "vs reference": "—" if v.is_reference else (v.quality_sentence or "—"),
            }
        )
    return rows


def quant_chart(report: QuantReport) -> Any:
    """Size vs mean KLD, and size vs quality with its 95% interval (plotly figure)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "size vs mean KL divergence to the reference (± its uncertainty)",
            f"size vs quality ({report.scorer or 'not measured'}, 95% bootstrap interval)",
        ),
    )
    variants = [v for v in report.variants if v.divergence is not None]
    mb = [v.size_bytes / 1e6 for v in variants]
    fig.add_trace(
        go.Scatter(
            x=mb,
            y=[v.divergence.kld_mean for v in variants if v.divergence],
            error_y={
                "type": "data",
                "array": [v.divergence.kld_mean_uncertainty for v in variants if v.divergence],
            },
            mode="markers+text+lines",
            text=[v.name for v in variants],
            textposition="top center",
            name="mean KLD",
        ),
        row=1,
        col=1,
    )
    fig.add_hline(
        y=report.kld_threshold, line_dash="dot", annotation_text="KLD threshold", row=1, col=1
    )
    scored = [v for v in report.variants if v.quality_mean is not None]
    fig.add_trace(
        go.Scatter(
            x=[v.size_bytes / 1e6 for v in scored],
            y=[v.quality_mean for v in scored],
            error_y={
                "type": "data",
                "array": [
                    (v.quality_ci95[1] - (v.quality_mean or 0)) if v.quality_ci95 else 0
                    for v in scored
                ],
                "arrayminus": [
                    ((v.quality_mean or 0) - v.quality_ci95[0]) if v.quality_ci95 else 0
                    for v in scored
                ],
            },
            mode="markers+text",
            text=[v.name for v in scored],
            textposition="top center",
            name="quality",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="file size (MB)")
    fig.update_xaxes(type="log", row=1, col=2)  # the float reference is far to the right
    fig.update_yaxes(title_text="mean KLD (nats)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="mean score", row=1, col=2)
    fig.update_layout(
        title=f"{report.model}: quantization variants (measured)",
        template="plotly_white",
        height=460,
        width=1100,
        showlegend=False,
    )
    return fig


def _html_table(rows: list[dict[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_quant_report(report: QuantReport, directory: Path, png: bool = True) -> dict[str, Path]:
    """Write ``quant.html``, ``quant.json`` and (if ``png``) ``quant.png``; return their paths."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {directory}: {exc.strerror}") from exc
    fig = quant_chart(report)
    chart = fig.to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False})
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in [report.reference_note, *report.notes])
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>llmpick quant: {html.escape(report.model)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
        f"<h1>Quantization variants of {html.escape(report.model)} (measured)</h1>"
        f"<p><b>{html.escape(report.sentence)}</b></p>"
        f"<p>Data: {html.escape(str(report.data.get('source')))} "
        f"({report.data.get('rows')} rows); KLD threshold {report.kld_threshold:g}.</p>"
        f"{_html_table(quant_table(report))}{chart}<ul>{notes}</ul></body></html>"
    )
    paths = {"html": directory / "quant.html", "json": directory / "quant.json"}
    paths["html"].write_text(page, encoding="utf-8")
    paths["json"].write_text(json.dumps(report.model_dump(mode="json"), indent=2), "utf-8")
    if png:
        paths["png"] = directory / "quant.png"
        try:
            fig.write_image(paths["png"], width=1100, height=460)
        except Exception as exc:  # kaleido raises its own errors when no browser is found
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(
                f"could not render {paths['png']}: {first}",
                f"kaleido needs Chrome or Chromium installed; or pass --no-png "
                f"({paths['html']} and {paths['json']} were written)",
            ) from exc
    return paths
