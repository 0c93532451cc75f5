"""``llmpick ui``: the workbench, a local web page to test models on your data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmpick.cli._common import console, get_context
from llmpick.store import DEFAULT_DB


def register(app: typer.Typer) -> None:
    """Add ``ui`` to the CLI."""
    app.command("ui")(ui_command)


def ui_command(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8765,
    db: Annotated[
        Path, typer.Option("--db", help="SQLite file holding sheets, runs and the cache.")
    ] = DEFAULT_DB,
) -> None:
    """Open the workbench: upload data, add model and scorer columns, vote blind, export.

    Cells are committed as they finish: stopping the server and starting it
    again resumes a column where it stopped (press Resume in the page).
    """
    import uvicorn

    from llmpick.ui import create_ui_app

    app = create_ui_app(get_context(ctx), db)
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"[yellow]warning:[/] binding {host}: anyone who can reach this address can use "
            "the workbench and run models on this machine",
            highlight=False,
        )
    shown = f"[{host}]" if ":" in host else host
    console.print(f"llmpick workbench on http://{shown}:{port}/ (Ctrl-C stops it)", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")
