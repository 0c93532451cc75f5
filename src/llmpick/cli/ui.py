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
    allow_any_model: Annotated[
        bool,
        typer.Option(
            "--allow-any-model",
            help="Let columns name any model spec (URLs, paths, downloads).",
        ),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A name clients may reach the page by, besides its addresses (repeatable).",
        ),
    ] = None,
) -> None:
    """Open the workbench: upload data, add model and scorer columns, vote blind, export.

    Cells are committed as they finish: stopping the server and starting it
    again resumes a column where it stopped (press Resume in the page). Once
    the store has API keys (llmpick keys create), the page asks for one; until
    then it answers only this machine. llmpick serve --ui serves it on the
    gateway instead, at /ui.
    """
    import uvicorn

    from llmpick.serve.security import SecurityPolicy
    from llmpick.store import open_store
    from llmpick.ui import create_ui_app

    keys = SecurityPolicy(open_store(db))  # the store's API keys (no limits apply here)
    app = create_ui_app(
        get_context(ctx),
        db,
        key_check=keys.key_owner,
        keys_required=keys.keys_required,
        host=host,
        allowed_hosts=allowed_host,
        allow_any_model=allow_any_model,
    )
    if host not in ("127.0.0.1", "localhost", "::1") and not keys.keys.has_keys():
        console.print(
            f"[yellow]warning:[/] binding {host}, but without API keys the workbench answers "
            "only this machine: create one with 'llmpick keys create --name NAME'",
            highlight=False,
        )
    shown = f"[{host}]" if ":" in host else host
    console.print(f"llmpick workbench on http://{shown}:{port}/ (Ctrl-C stops it)", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")
