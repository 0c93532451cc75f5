"""Charts of benchmark results as self-contained HTML files (plotly, JS inlined).

``write_plots(results, directory)`` writes ``latency.html`` (box plots of the
TTFT, TPOT and E2E distributions of every model and load point) and
``throughput.html`` (aggregate output tokens/s against concurrency, and
against request rate where rates were run). Every figure is measured.
"""

from __future__ import annotations

from pathlib import Path

from llmpick.bench.metrics import (
    e2e_latency_s,
    time_per_output_token_s,
    time_to_first_token_s,
)
from llmpick.bench.results import BenchResult
from llmpick.errors import UsageError

__all__ = ["write_plots"]


def write_plots(results: list[BenchResult], directory: Path) -> list[Path]:
    """Write the charts for ``results`` into ``directory``; return the files written."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create plot directory {directory}: {exc.strerror}") from exc

    latency = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("time to first token (s)", "time per output token (s)", "E2E latency (s)"),
    )
    for result in results:
        for point in result.results:
            ok = [t for t in point.timings if t.ok]
            name = f"{result.model} {point.point.label}"
            series: tuple[list[float | None], ...] = (
                [time_to_first_token_s(t) for t in ok],
                [time_per_output_token_s(t) for t in ok],
                [e2e_latency_s(t) for t in ok],
            )
            for col, values in enumerate(series, start=1):
                latency.add_trace(
                    go.Box(
                        y=[v for v in values if v is not None],
                        name=name,
                        legendgroup=name,
                        showlegend=col == 1,
                        boxpoints="all",
                    ),
                    row=1,
                    col=col,
                )
    latency.update_layout(title="Latency distribution (measured, successful requests)")

    throughput = make_subplots(
        rows=1, cols=2, subplot_titles=("closed loop", "open loop (Poisson)")
    )
    for result in results:
        closed = [p for p in result.results if p.point.concurrency is not None]
        opened = [p for p in result.results if p.point.rate is not None]
        if closed:
            throughput.add_trace(
                go.Scatter(
                    x=[p.point.concurrency for p in closed],
                    y=[p.metrics.output_tokens_per_second for p in closed],
                    mode="lines+markers",
                    name=f"{result.model}",
                ),
                row=1,
                col=1,
            )
        if opened:
            throughput.add_trace(
                go.Scatter(
                    x=[p.point.rate for p in opened],
                    y=[p.metrics.output_tokens_per_second for p in opened],
                    mode="lines+markers",
                    name=f"{result.model} (rate)",
                ),
                row=1,
                col=2,
            )
    throughput.update_xaxes(title_text="concurrency", row=1, col=1)
    throughput.update_xaxes(title_text="requests/s offered", row=1, col=2)
    throughput.update_yaxes(title_text="output tokens/s (measured)")
    throughput.update_layout(title="Throughput")

    written = []
    for figure, name in ((latency, "latency.html"), (throughput, "throughput.html")):
        path = directory / name
        figure.write_html(path, include_plotlyjs=True, full_html=True)
        written.append(path)
    return written
