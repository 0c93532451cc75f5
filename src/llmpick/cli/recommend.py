"""``llmpick recommend``: a ranked, explained shortlist for a task and a device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from llmpick.cli._common import TableOrJson, console, print_json
from llmpick.errors import UsageError
from llmpick.fit import RUNTIMES
from llmpick.fit.measured_loss import loss_lookup
from llmpick.recommend import (
    TASKS,
    USE_CASE_FLOORS,
    Constraints,
    Recommendation,
    parse_weights,
    recommend,
)
from llmpick.store import DEFAULT_DB

LICENSES = ("any", "commercial", "permissive")


def register(app: typer.Typer) -> None:
    """Add ``recommend`` to ``app``."""
    app.command("recommend")(recommend_command)


def recommend_command(
    task: Annotated[str, typer.Option("--task", "-t", help="|".join(TASKS))] = "chat",
    languages: Annotated[
        str | None, typer.Option("--languages", "-l", help="ISO 639-1 codes, e.g. en,zh.")
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            "-d",
            help="rtx4090, a100-80gb, m2-max, 16gb, cpu... (default: this machine)",
        ),
    ] = None,
    quant: Annotated[
        str | None, typer.Option("--quant", "-q", help="Only this quantization.")
    ] = None,
    runtime: Annotated[str, typer.Option("--runtime", help="|".join(RUNTIMES))] = "llamacpp",
    license_: Annotated[
        str, typer.Option("--license", help="any | commercial | permissive")
    ] = "any",
    min_context: Annotated[
        int | None, typer.Option("--min-context", min=1, help="Needed context, tokens.")
    ] = None,
    max_params: Annotated[
        float | None, typer.Option("--max-params", help="Largest total size, billions.")
    ] = None,
    max_price: Annotated[
        float | None,
        typer.Option("--max-price", help="Max API output price, USD per 1M tokens."),
    ] = None,
    weights: Annotated[
        str,
        typer.Option("--weights", help="quality=0.92,speed=0.05,cost=0.03 (rescaled to sum 1)."),
    ] = "quality=0.92,speed=0.05,cost=0.03",
    use_case: Annotated[
        str | None,
        typer.Option(
            "--use-case",
            help="interactive | code-completion | batch (speed floor; default per task).",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, help="Sequences served at once (KV sized for all)."),
    ] = 1,
    context: Annotated[
        int | None, typer.Option("--context", min=1, help="Context to size memory for, tokens.")
    ] = None,
    modality: Annotated[
        str | None, typer.Option("--modality", help="Input modalities needed, e.g. image.")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Every reason: constraint, evidence, format, ties.")
    ] = False,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="How many to show.")] = 5,
    include_base: Annotated[
        bool, typer.Option("--include-base", help="Consider base (non-instruct) models too.")
    ] = False,
    db: Annotated[
        Path,
        typer.Option("--db", help="Store with quantization losses measured by llmpick quant."),
    ] = DEFAULT_DB,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json.")
    ] = TableOrJson.table,
) -> None:
    """Shortlist models for a task that fit a device, ranked and explained."""
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}", "use one of: " + ", ".join(TASKS))
    if license_ not in LICENSES:
        raise UsageError(f"unknown license filter {license_!r}", "use any, commercial, permissive")
    if use_case is not None and use_case not in USE_CASE_FLOORS:
        raise UsageError(f"unknown use case {use_case!r}", "use " + ", ".join(USE_CASE_FLOORS))
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}", "use one of: " + ", ".join(RUNTIMES))
    langs = [x.strip().lower() for x in (languages or "").split(",") if x.strip()]
    constraints = Constraints(
        task=task,
        languages=langs,
        device=device,
        quant=quant,
        runtime=runtime,
        license=license_,
        min_context=min_context,
        max_params_b=max_params,
        max_price=max_price,
        weights=parse_weights(weights),
        top=top,
        include_base=include_base,
        use_case=use_case,
        concurrency=concurrency,
        context=context,
        modalities=[m.strip() for m in (modality or "").split(",") if m.strip()],
    )
    result = recommend(constraints, losses=loss_lookup(db))
    if output_format is TableOrJson.json:
        print_json(result.to_json_dict())
        return
    _print(result, explain)


def _print(r: Recommendation, explain: bool = False) -> None:
    w = r.weights
    console.print(
        f"[bold]{r.task}[/] on {r.device['name']} at {r.context:,} tokens · quality first: "
        f"{w.quality:.2f} x quality + {w.speed:.2f} x speed above the floor + {w.cost:.2f} x "
        "memory headroom (change with --weights; memory and speed are estimates)",
        highlight=False,
    )
    if r.calibration:
        console.print(f"speeds: {r.calibration}", highlight=False)
    if not r.candidates:
        console.print("[yellow]No model passes every constraint.[/] See the exclusions below.")
    table = Table()
    for col in (
        "#",
        "model",
        "score",
        "quality (interval)",
        "quant",
        "memory (est.)",
        "tok/s (est.)",
        "confidence",
    ):
        table.add_column(col, overflow="fold")
    for i, c in enumerate(r.candidates, 1):
        table.add_row(
            str(i),
            c.id,
            f"{c.score:.3f}",
            f"{c.quality:.2f}"
            + (f" ({c.quality_range[0]:.2f}-{c.quality_range[1]:.2f})" if c.quality_range else ""),
            c.quant,
            f"{c.estimated_memory_bytes / 2**30:.1f} GiB",
            (f"{c.decode_tokens_per_second:.0f}" if c.decode_tokens_per_second else "n/a")
            + (" (calibrated)" if c.decode_label == "estimated (calibrated)" else ""),
            c.confidence,
        )
    console.print(table)
    for i, c in enumerate(r.candidates, 1):
        console.print(f"[bold]{i}. {c.id}[/]", highlight=False)
        shown = c.reasons if explain else [r for r in c.reasons if _headline(r)]
        for reason in shown:
            console.print(f"   - {reason}", highlight=False, soft_wrap=True)
    if not explain:
        console.print("(--explain shows every reason: evidence sources, quality loss, license)")
    if r.excluded:
        console.print("[bold]Notable exclusions[/] (best-rated first):")
        for e in r.excluded[:8]:
            console.print(f"  {e.id}: {e.reason}", highlight=False)


def _headline(reason: str) -> bool:
    return reason.startswith(("binding constraint", "coverage", "quantization", "tied"))
