"""``llmpick quant``: quantization variants measured on your data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from llmpick.cli._common import TableOrJson, console, err_console, get_context, print_json
from llmpick.errors import UsageError
from llmpick.quant import (
    QuantOptions,
    QuantReport,
    quant_table,
    run_quant,
    save_quant,
    write_quant_report,
)
from llmpick.quant.sweep import DEFAULT_KLD_THRESHOLD
from llmpick.store import DEFAULT_DB, open_store


def register(app: typer.Typer) -> None:
    """Add ``quant`` to ``app``."""
    app.command("quant")(quant_command)


def quant_command(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(help="A local GGUF: bundled alias, llamacpp:PATH.gguf, a yaml name.")
    ],
    variants: Annotated[
        str,
        typer.Option("--variants", help="Comma-separated llama.cpp types, e.g. Q8_0,Q4_K_M,Q2_K."),
    ] = "Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K",
    data: Annotated[
        Path | None,
        typer.Option("--data", help="CSV/JSONL/JSON/Parquet rows (default: the bundled sample)."),
    ] = None,
    scorer: Annotated[
        list[str] | None,
        typer.Option("--scorer", "-s", help="NAME[:ARG=VAL,…], repeatable; default from the data."),
    ] = None,
    kld_threshold: Annotated[
        float,
        typer.Option("--kld-threshold", min=0.0, help="Largest acceptable mean KLD (nats)."),
    ] = DEFAULT_KLD_THRESHOLD,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 64,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N rows.")] = None,
    n_ctx: Annotated[int, typer.Option("--n-ctx", min=32, help="Context for every model.")] = 1024,
    keep_free_gb: Annotated[
        float, typer.Option("--keep-free-gb", min=0.0, help="Disk space to leave free.")
    ] = 0.0,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="Measure quality.")] = True,
    bench: Annotated[bool, typer.Option("--bench/--no-bench", help="Measure speed.")] = True,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for quant.html, quant.png, quant.json.")
    ] = Path("llmpick-quant"),
    png: Annotated[bool, typer.Option("--png/--no-png", help="Also render quant.png.")] = True,
    db: Annotated[Path, typer.Option("--db", help="SQLite store.")] = DEFAULT_DB,
    output_format: Annotated[TableOrJson, typer.Option("--format")] = TableOrJson.table,
) -> None:
    """Build quantized variants of a GGUF model and measure what each loses on your data.

    The reference is the highest-precision GGUF available (a quantized file is
    dequantized to F32: exactly the function that file computes); variants come
    from llama.cpp's quantizer and are kept in the cache dir. Per variant: size,
    peak memory, decode speed, KL divergence, same top token, ΔPPL and quality
    with a paired test against the reference; then the smallest variant that
    holds (or none).
    """
    names = [v.strip() for v in variants.split(",") if v.strip()]
    if not names:
        raise UsageError("--variants is empty", "e.g. --variants Q8_0,Q4_K_M")
    options = QuantOptions(
        variants=names,
        data=data,
        scorers=list(scorer or []),
        kld_threshold=kld_threshold if kld_threshold > 0 else 1e-12,
        max_tokens=max_tokens,
        limit=limit,
        n_ctx=n_ctx,
        keep_free_bytes=int(keep_free_gb * 1e9),
        evaluate=evaluate,
        bench=bench,
        db_path=db,
        on_event=lambda text: err_console.print(f"[dim]{escape(text)}[/]", highlight=False),
    )
    report = run_quant(get_context(ctx), model, options)
    with open_store(db) as store:
        save_quant(store, report)
    paths = write_quant_report(report, out, png=png)
    if output_format is TableOrJson.json:
        print_json(
            {**report.model_dump(mode="json"), "files": {k: str(v) for k, v in paths.items()}}
        )
        return
    _print(report)
    console.print(
        f"chart and table: {paths['html']}" + (f", {paths['png']}" if "png" in paths else ""),
        highlight=False,
    )


def _print(report: QuantReport) -> None:
    console.print(escape(report.reference_note), highlight=False)
    rows = quant_table(report)
    table = Table(title=f"{report.model}: variants measured on {report.data['source']}")
    for col in rows[0]:
        if col != "vs reference":
            table.add_column(col, justify="left" if col == "variant" else "right")
    for row in rows:
        table.add_row(*(v for k, v in row.items() if k != "vs reference"))
    console.print(table)
    for v in report.variants:
        if v.quality_sentence:
            console.print(f"• {v.name}: {escape(v.quality_sentence)}", highlight=False)
    console.print(f"[bold]{escape(report.sentence)}[/]", highlight=False)
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]", highlight=False)
