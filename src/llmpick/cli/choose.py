"""``llmpick choose`` (the whole pipeline, with a report) and ``llmpick cost``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from llmpick.cli._common import TableOrJson, console, err_console, get_context, print_json
from llmpick.errors import UsageError

LICENSES = ("any", "commercial", "permissive")
STAGES = {"shortlist": 1, "probe": 2, "evaluate": 3, "bench": 4, "rank": 5}


def register(app: typer.Typer) -> None:
    """Add ``choose`` and ``cost`` to ``app``."""
    app.command("choose")(choose_command)
    app.command("cost")(cost_command)


class _Progress:
    """Stage lines on stderr, a spinner while loading and benchmarking."""

    def __init__(self, stream: Console) -> None:
        self.console = stream
        self.stage = ""
        self.status: Status | None = None
        self.started = time.perf_counter()

    def __call__(self, stage: str, message: str) -> None:
        if stage == "warning":
            self._stop()
            self.console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)
            return
        if stage != self.stage:
            self._stop()
            self.stage = stage
            number = STAGES.get(stage)
            label = f"[{number}/5] " if number else ""
            elapsed = time.perf_counter() - self.started
            self.console.print(
                f"[bold]{label}{stage}[/] {escape(message)} [dim]({elapsed:.0f} s)[/]",
                highlight=False,
            )
            if stage in ("probe", "bench"):
                self.status = self.console.status(escape(message))
                self.status.start()
        elif self.status is not None:
            self.status.update(escape(message))

    def _stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def close(self) -> None:
        self._stop()


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _print_summary(doc: dict[str, Any], paths: dict[str, Path]) -> None:
    verdict = doc["verdict"]
    colour = {"winner": "green", "tied": "yellow", "trade-off": "yellow"}.get(
        verdict["status"], "red"
    )
    head = f"Winner: {verdict['winner']}. " if verdict.get("winner") else ""
    console.print(f"[bold {colour}]{escape(head)}[/]{escape(verdict['sentence'])}", highlight=False)
    if doc["ranking"]:
        table = Table(title="Ranking by your weights (quality and speed measured here)")
        for column in ("#", "model", "quality", "95% CI", "n", "tokens/s", "$/1M out", "score"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for r in doc["ranking"]:
            ci = r["quality_ci95"]
            table.add_row(
                str(r["rank"]),
                r["model"],
                _fmt(r["quality"]),
                f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "—",
                str(r["n"]),
                _fmt(r["output_tokens_per_second"]),
                f"${r['usd_per_mtok']:.3g}" if r["usd_per_mtok"] else "—",
                _fmt(r["weighted_score"]),
            )
        console.print(table)
    table = Table(title="Candidates (shortlist: estimated fit; evaluated: measured here)")
    for column in ("model", "from", "status", "note"):
        table.add_column(column)
    for c in doc["candidates"]:
        note = c["error"] or ""
        if c["status"] == "not-runnable" and c["how_to_run"]:
            # the first way, first line (the report has the llmpick.yaml snippets)
            note = c["how_to_run"][0].splitlines()[0].split(", then")[0]
        table.add_row(c["name"], c["origin"], c["status"], note)
    console.print(table)
    evaluation = doc.get("evaluation") or {}
    if evaluation:
        console.print(
            f"cells: {evaluation['cells_total']} total, {evaluation['cells_cached']} reused "
            f"from the store; took {doc['timing_s'].get('total_s', 0):.0f} s"
        )
    console.print(
        f"report: {paths['html']}  (also {paths['markdown'].name}, {paths['json'].name})",
        highlight=False,
    )


def choose_command(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="CSV/JSONL/JSON/Parquet of your prompts (default: bundled)."),
    ] = None,
    task: Annotated[str, typer.Option("--task", "-t", help="chat, coding, math, ...")] = "general",
    device: Annotated[
        str | None, typer.Option("--device", "-d", help="Target device (default: this machine).")
    ] = None,
    languages: Annotated[
        str | None, typer.Option("--languages", "-l", help="ISO codes, e.g. en,zh,vi,th.")
    ] = None,
    license_: Annotated[
        str, typer.Option("--license", help="any | commercial | permissive")
    ] = "any",
    min_context: Annotated[int | None, typer.Option("--min-context", min=1)] = None,
    max_price: Annotated[
        float | None, typer.Option("--max-price", help="Max API output $ per 1M tokens.")
    ] = None,
    weights: Annotated[
        str, typer.Option("--weights", help="quality=0.6,speed=0.2,cost=0.2")
    ] = "quality=0.6,speed=0.2,cost=0.2",
    models: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Also evaluate MODEL (repeat).")
    ] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="Judge model.")] = None,
    scorers: Annotated[
        list[str] | None, typer.Option("--scorer", help="NAME[:ARG=VAL,...] (repeat).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Report directory.")] = Path("llmpick-report"),
    db: Annotated[Path, typer.Option("--db", help="SQLite store.")] = Path("llmpick.db"),
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json.")
    ] = TableOrJson.table,
    gpu_hourly_usd: Annotated[
        float | None, typer.Option("--gpu-hourly-usd", help="Device $/hour for the cost.")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Concurrency for speed and cost.")
    ] = 1,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="Output tokens per prompt.")
    ] = 128,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N prompts.")
    ] = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Shortlist size.")] = 5,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    bench_requests: Annotated[
        int, typer.Option("--bench-requests", min=1, help="Requests per speed measurement.")
    ] = 3,
    quant_sweep: Annotated[
        str | None,
        typer.Option(
            "--quant-sweep",
            help="Also compare these llama.cpp quantizations (e.g. Q8_0,Q4_K_M) of each "
            "local GGUF candidate (built with llmpick quant's quantizer).",
        ),
    ] = None,
) -> None:
    """Choose a model: shortlist, evaluate on your data, measure, rank, and write a report."""
    from llmpick.choose import ChooseOptions, check_options, choose
    from llmpick.recommend import parse_weights
    from llmpick.report import write_report

    if license_ not in LICENSES:
        raise UsageError(f"unknown license filter {license_!r}", "use any, commercial, permissive")
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    if gpu_hourly_usd is not None and gpu_hourly_usd <= 0:
        raise UsageError(f"--gpu-hourly-usd must be positive, got {gpu_hourly_usd:g}")
    progress = _Progress(err_console)
    options = ChooseOptions(
        data=data,
        task=task,
        device=device,
        languages=[x.strip().lower() for x in (languages or "").split(",") if x.strip()],
        license=license_,
        min_context=min_context,
        max_price=max_price,
        weights=parse_weights(weights),
        top=top,
        models=list(models or []),
        judge=judge,
        scorers=list(scorers or []),
        db_path=db,
        gpu_hourly_usd=gpu_hourly_usd,
        concurrency=concurrency,
        max_tokens=max_tokens,
        limit=limit,
        seed=seed,
        bench_requests=bench_requests,
        quant_sweep=[v.strip() for v in (quant_sweep or "").split(",") if v.strip()],
        progress=True,
        on_event=progress,
    )
    check_options(options)
    try:
        result = choose(get_context(ctx), options)
    finally:
        progress.close()
    paths = write_report(result, out)
    doc = result.to_json()
    if output_format == TableOrJson.json:
        print_json({**doc, "report": {k: str(v) for k, v in paths.items()}})
    else:
        _print_summary(doc, paths)


def cost_command(
    models: Annotated[list[str], typer.Argument(help="Catalog ids or bundled aliases.")],
    device: Annotated[
        str | None, typer.Option("--device", "-d", help="Device (default: this machine).")
    ] = None,
    gpu_hourly_usd: Annotated[
        float | None, typer.Option("--gpu-hourly-usd", help="Device $/hour (overrides table).")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Sequences at once.")] = 1,
    tokens_per_second: Annotated[
        float | None,
        typer.Option("--tokens-per-second", help="Your measured aggregate output tokens/s."),
    ] = None,
    quant: Annotated[
        str | None, typer.Option("--quant", "-q", help="Quantization for the estimate.")
    ] = None,
    db: Annotated[
        Path, typer.Option("--db", help="Store to read benchmarks from (this machine only).")
    ] = Path("llmpick.db"),
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json.")
    ] = TableOrJson.table,
) -> None:
    """Self-hosted $ per 1M output tokens next to API prices from the catalog."""
    from llmpick.cost import cost_rows

    rows = cost_rows(
        models,
        device_name=device,
        gpu_hourly_usd=gpu_hourly_usd,
        concurrency=concurrency,
        tokens_per_second=tokens_per_second,
        db_path=db,
        quant=quant,
    )
    if output_format == TableOrJson.json:
        print_json([r.model_dump(mode="json") | {"basis": r.basis()} for r in rows])
        return
    table = Table(title="Cost per 1M output tokens (self-hosted: list $/hour / throughput)")
    for column in ("model", "device", "$/hour", "tokens/s", "$/1M out", "API in / out", "basis"):
        table.add_column(column, justify="right" if column.startswith(("$", "tok")) else "left")
    for r in rows:
        api = "; ".join(
            f"{a.provider} ${a.input_usd_per_mtok:g}/${a.output_usd_per_mtok:g}"
            for a in r.api_prices
        )
        table.add_row(
            r.model,
            r.device,
            f"${r.hourly.usd_per_hour:.3g}" if r.hourly else "—",
            f"{r.throughput.tokens_per_second:.3g} ({r.throughput.kind}"
            + (", calibrated)" if r.throughput.calibrated else ")")
            if r.throughput
            else "—",
            f"${r.usd_per_mtok:.3g}" if r.usd_per_mtok is not None else "—",
            api or "none in the catalog",
            r.basis(),
        )
    console.print(table)
