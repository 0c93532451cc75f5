"""Shared CLI plumbing: the global options, the context, output helpers."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from llmpick.context import Context

console = Console()
err_console = Console(stderr=True)


class TableOrJson(str, Enum):
    """Output format: a Rich table or one JSON document."""

    table = "table"
    json = "json"


class Exportable(str, Enum):
    """Output formats for tabular results."""

    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


def global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="llmpick.yaml with named models (default: ./llmpick.yaml)."),
    ] = None,
) -> None:
    """Choose the right open-weight LLM, then prove it on your own data."""
    ctx.obj = {"config": config}


def get_context(ctx: typer.Context) -> Context:
    """Build the run's Context from the global options (once per command)."""
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    if "context" not in obj:
        obj["context"] = Context(config_path=obj.get("config"))
        root.obj = obj
    context: Context = obj["context"]
    return context


def print_json(data: Any) -> None:
    """Print one JSON document to stdout, unstyled."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
