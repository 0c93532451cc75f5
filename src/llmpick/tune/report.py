"""The tune report: ``tune.json``, ``tune.html`` and ``tune.png`` (the training curve).

The curve is the mean answer-token loss per optimizer step on the training
rows and, at every checkpoint, on the held-out rows (measured). The PNG is
rendered by kaleido with the local Chrome/Chromium, as the quant report's;
when that fails the HTML and JSON are still written and a note says why.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from llmpick.tune.run import TuneReport

__all__ = ["training_curve", "write_tune_report"]


def training_curve(report: TuneReport) -> Any:
    """Train and held-out loss per step (plotly figure)."""
    import plotly.graph_objects as go

    state = report.training.state
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[s for s, _ in state.train_loss],
            y=[v for _, v in state.train_loss],
            mode="lines",
            name="train (per step)",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[s for s, _ in state.holdout_loss],
            y=[v for _, v in state.holdout_loss],
            mode="lines+markers",
            name="held-out",
        )
    )
    for step in state.resumed_at:
        fig.add_vline(x=step, line_dash="dot", annotation_text="resumed")
    fig.update_layout(
        title=f"{report.model} + LoRA: loss on answer tokens (measured)",
        xaxis_title="optimizer step",
        yaxis_title="cross-entropy (nats per answer token)",
        template="plotly_white",
        height=420,
        width=900,
    )
    return fig


def _figures(report: TuneReport) -> list[tuple[str, str]]:
    t = report.training
    resumed = ", ".join(map(str, t.state.resumed_at))
    rate = t.tokens_per_second
    peak = t.peak_memory_bytes
    rows = [
        ("steps", f"{t.state.step} of {t.state.total_steps}"
         + (f" (resumed at {resumed})" if resumed else "")),
        ("trainable parameters", f"{t.trainable_params:,} of {t.total_params:,}"),
        ("training tokens/s (measured)", "—" if rate is None else f"{rate:.1f}"),
        (f"{t.peak_memory_kind} (measured)", "—" if peak is None else f"{peak / 2**20:.0f} MiB"),
    ]  # fmt: skip
    if report.memory_estimate:
        total = report.memory_estimate.get("total_bytes")
        rows.append(("training memory (estimated)", f"{total / 2**20:.0f} MiB" if total else "—"))
    proof = report.proof
    if proof is not None:
        for label, score in (("base", proof.base), ("tuned", proof.tuned)):
            ci = f" [{score.ci95[0]:.2f}, {score.ci95[1]:.2f}]" if score.ci95 else ""
            mean = "—" if score.mean is None else f"{score.mean:.3f}"
            rows.append((f"{label} ({score.name}), n = {score.n}", mean + ci))
    return rows


def write_tune_report(report: TuneReport, directory: Path, png: bool = True) -> dict[str, Path]:
    """Write ``tune.json``, ``tune.html`` and (if ``png``) ``tune.png``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    fig = training_curve(report)
    paths = {"json": directory / "tune.json", "html": directory / "tune.html"}
    if png:
        try:
            fig.write_image(directory / "tune.png", width=900, height=420)
            paths["png"] = directory / "tune.png"
        except Exception as exc:  # kaleido raises its own errors when no browser is found
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            report.notes.append(f"no tune.png: {first} (kaleido needs Chrome or Chromium)")
    paths["json"].write_text(json.dumps(tune_json(report), indent=2), encoding="utf-8")
    chart = fig.to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False})
    table = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _figures(report)
    )
    proof = report.proof
    headline = html.escape(proof.sentence) if proof else "not evaluated (--no-eval)"
    warning = f"<p style='color:#b00'><b>{html.escape(proof.warning)}</b></p>" if (
        proof and proof.warning) else ""  # fmt: skip
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>llmpick tune: {html.escape(report.model)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
        f"<h1>{html.escape(report.model)} + LoRA</h1><p><b>{headline}</b></p>{warning}"
        f"<p>Use it with <code>-m {html.escape(report.spec)}</code>. Data: "
        f"{html.escape(str(report.data['source']))}, {report.data['train_rows']} rows trained, "
        f"{report.data['holdout_rows']} held out.</p><table>{table}</table>{chart}"
        f"<ul>{notes}</ul></body></html>"
    )
    paths["html"].write_text(page, encoding="utf-8")
    return paths


def tune_json(report: TuneReport) -> dict[str, Any]:
    """``tune.json``: the headline figures first, then everything the report holds."""
    proof = report.proof
    head: dict[str, Any] = {
        "schema_version": report.schema_version,
        "model": report.model,
        "spec": report.spec,
        "adapter": report.adapter_dir,
        "gguf_adapter": report.gguf_adapter,
    }
    if proof is not None:
        head.update(
            base=proof.base.model_dump(mode="json"),
            tuned=proof.tuned.model_dump(mode="json"),
            p_value=proof.p_value,
            sentence=proof.sentence,
            warning=proof.warning,
        )
    rest = report.model_dump(mode="json", exclude={"schema_version", "model", "spec", "base"})
    return {**head, "base_model": report.base.model_dump(mode="json"), **rest}
