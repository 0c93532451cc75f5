"""CLI commands of the catalog stage: ``llmpick compare``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from llmpick.catalog import load_catalog
from llmpick.catalog.compare import DISAGREEMENT_POINTS, card_to_json, compare_rows
from llmpick.cli._common import Exportable, console, print_json, rows_to_csv, rows_to_markdown


def compare(
    models: Annotated[
        list[str],
        typer.Argument(
            help="Catalog ids (Hugging Face repo ids) or aliases, e.g. qwen2.5-7b-instruct"
        ),
    ],
    output: Annotated[
        Exportable, typer.Option("--format", "-f", help="Output format.")
    ] = Exportable.table,
) -> None:
    """Compare models side by side: specs, context, license, benchmarks with sources, prices.

    Figures come from the catalog, each with its source (published, not measured here).
    """
    catalog = load_catalog()
    cards = []
    for name in models:
        card = catalog.get(name)
        if card not in cards:
            cards.append(card)
    if output is Exportable.json:
        print_json([card_to_json(card) for card in cards])
        return
    rows = compare_rows(cards)
    ids = [card.id for card in cards]
    flat = [row.as_dict(ids) for row in rows]
    if output is Exportable.csv:
        typer.echo(rows_to_csv(flat), nl=False)
        return
    if output is Exportable.markdown:
        typer.echo(rows_to_markdown(flat), nl=False)
        return
    table = Table(
        title="Model comparison (published figures from the catalog, with sources; not measured)",
        show_lines=True,
    )
    table.add_column("field", style="bold")
    for card_id in ids:
        table.add_column(card_id, overflow="fold")
    table.add_column("winner")
    table.add_column("flag", style="yellow")
    for row in rows:
        label = f"{row.section}: {row.label}"
        if row.better:
            label += f" ({row.better} is better)"
        table.add_row(label, *(row.cells.get(i, "") for i in ids), row.winner or "", row.flag or "")
    console.print(table)
    console.print(
        f"Flags mark sources that disagree by more than {DISAGREEMENT_POINTS:g} points "
        "or models scored under different protocols; compare like with like."
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("compare")(compare)
