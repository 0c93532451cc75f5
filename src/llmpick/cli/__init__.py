"""The ``llmpick`` command line: one module per command group.

Commands are thin: parse, call the library, print. Library errors
(:class:`llmpick.errors.LlmpickError`) become one line on stderr and exit 2;
Ctrl-C exits 130 (typer turns KeyboardInterrupt into exit code 130);
commands commit work as it finishes, so nothing finished is lost.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from llmpick.cli import (
    _common,
    bench,
    catalog,
    choose,
    evaluate,
    fit,
    keys,
    models,
    quant,
    recommend,
    serve,
    tune,
    ui,
)
from llmpick.errors import LlmpickError

__all__ = ["app", "main"]

app = typer.Typer(
    name="llmpick",
    help="Choose the right open-weight LLM for your task, hardware and budget, "
    "then prove the choice on your own data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
app.callback()(_common.global_options)
for _module in (
    models,
    catalog,
    fit,
    recommend,
    evaluate,
    bench,
    choose,
    quant,
    tune,
    ui,
    serve,
    keys,
):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except LlmpickError as exc:
        _common.err_console.print(
            f"[bold red]error:[/] {escape(exc.one_line())}",
            highlight=False,
            soft_wrap=True,
            markup=True,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        _common.err_console.print("interrupted; finished work was saved")
        sys.exit(130)
