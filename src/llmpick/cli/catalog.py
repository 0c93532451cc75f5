"""CLI commands of the catalog stage: ``llmpick compare`` and ``llmpick catalog``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from llmpick.catalog import load_catalog
from llmpick.catalog.compare import DISAGREEMENT_POINTS, card_to_json, compare_rows
from llmpick.catalog.stats import catalog_stats
from llmpick.cli._common import (
    Exportable,
    TableOrJson,
    console,
    print_json,
)
from llmpick.evaluate.results import rows_to_csv, rows_to_markdown


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
        f"Flags mark sources that disagree by more than {DISAGREEMENT_POINTS:g} points, "
        "third-party figures the maker's contradicts, figures not checked at their source "
        "(unverified), or models scored under different protocols; compare like with like."
    )


def catalog(
    stats: Annotated[
        bool,
        typer.Option("--stats", help="Print cards, fields and the share verified at the source."),
    ] = False,
    output: Annotated[
        TableOrJson, typer.Option("--format", "-f", help="Output format.")
    ] = TableOrJson.table,
) -> None:
    """List the catalog's models, or with --stats how much of it was verified at the source.

    A figure is verified when someone checked it against the source it cites (the
    model's config.json, the maker's card or report); unverified figures stay in
    the catalog and are marked so wherever they are shown.
    """
    cards = load_catalog().cards
    if stats:
        summary = catalog_stats(cards)
        if output is TableOrJson.json:
            print_json(summary.as_json())
            return
        table = Table(title=f"Catalog: {summary.cards} cards, "
                      f"{summary.cards_fully_verified} fully verified")  # fmt: skip
        for column in ("fields", "count", "verified", "share verified"):
            table.add_column(column, justify="left" if column == "fields" else "right")
        for kind in summary.kinds:
            table.add_row(
                kind.kind, str(kind.fields), str(kind.verified), f"{kind.share_verified:.0%}"
            )
        table.add_row(
            "all", str(summary.fields), str(summary.verified), f"{summary.share_verified:.0%}"
        )
        console.print(table)
        return
    rows = [
        {
            "id": card.id,
            "family": f"{card.family} {card.version}",
            "params": card.params.total,
            "context": card.context.max,
            "architecture_verified": card.architecture.verified,
            "benchmarks": len(card.benchmarks),
            "benchmarks_verified": sum(b.verified for b in card.benchmarks),
        }
        for card in cards
    ]
    if output is TableOrJson.json:
        print_json(rows)
        return
    table = Table(title=f"Catalog: {len(rows)} models (published figures, not measured)")
    for column in ("id", "family", "params", "context", "architecture", "benchmarks verified"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["family"]),
            f"{int(str(row['params'])) / 1e9:.3g}B",
            f"{row['context']:,}",
            "verified" if row["architecture_verified"] else "unverified",
            f"{row['benchmarks_verified']} of {row['benchmarks']}",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("compare")(compare)
    app.command("catalog")(catalog)
