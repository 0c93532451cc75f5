"""The ``llmpick`` command line: one module per command group.

Commands are thin: parse, call the library, print. Library errors
(:class:`llmpick.errors.LlmpickError`) become one line on stderr and exit 2;
Ctrl-C exits 130 (typer turns KeyboardInterrupt into exit code 130);
commands commit work as it finishes, so nothing finished is lost.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from llmpick.cli import _common
from llmpick.errors import LlmpickError

__all__ = ["COMMANDS", "LazyCommands", "app", "main"]

#: every command, in the listing's order: the module under ``llmpick.cli`` that registers
#: it and the one line ``llmpick --help`` shows (tests/test_cli_lazy.py checks each line
#: against the command's own help)
COMMANDS: dict[str, tuple[str, str]] = {
    "models": (
        "models",
        "List the models that can run here: bundled and configured, with backend and identity.",
    ),
    "run": ("models", "Run one prompt through a model and stream the answer."),
    "compare": (
        "catalog",
        "Compare models side by side: specs, context, license, benchmarks with sources, prices.",
    ),
    "catalog": (
        "catalog",
        "List the catalog's models, or with --stats how much of it was verified at the source.",
    ),
    "fit": (
        "fit",
        "Estimate memory (weights, KV cache, overhead) and speed of MODEL on a device.",
    ),
    "hardware": (
        "fit",
        "Show this machine (CPU, RAM, GPUs) and, with --list, the known devices.",
    ),
    "recommend": (
        "recommend",
        "Shortlist models for a task that fit a device, ranked and explained.",
    ),
    "eval": (
        "evaluate",
        "Run every model on every row, score the outputs, and compare the models.",
    ),
    "results": (
        "evaluate",
        "Show a run's cells: side by side (one row per prompt, one column per model).",
    ),
    "runs": ("evaluate", "List the runs in the store, newest first."),
    "rescore": (
        "evaluate",
        "Recompute a run's scores from its stored outputs (no model runs again).",
    ),
    "bench": (
        "bench",
        "Measure TTFT, TPOT, ITL, E2E, throughput, goodput and memory, beside fit's estimate.",
    ),
    "choose": (
        "choose",
        "Choose a model: shortlist, evaluate on your data, measure, rank, and write a report.",
    ),
    "cost": ("choose", "Self-hosted $ per 1M output tokens next to API prices from the catalog."),
    "quant": (
        "quant",
        "Build quantized variants of a GGUF model and measure what each loses on your data.",
    ),
    "tune": (
        "tune",
        "Train a LoRA adapter on your rows, then test it against its base on held-out rows.",
    ),
    "ui": (
        "ui",
        "Open the workbench: upload data, add model and scorer columns, vote blind, export.",
    ),
    "serve": (
        "serve",
        "Serve models behind an OpenAI-compatible API that routes each request to the model "
        "your measurements chose.",
    ),
    "keys": (
        "keys",
        "API keys for llmpick serve: the key is shown once; the store keeps only its hash.",
    ),
}


class LazyCommands(TyperGroup):
    """The root group: a command's module is imported only when that command runs.

    ``llmpick --help`` lists :data:`COMMANDS` from the table, so listing imports no
    command module (and none of what they pull in: evaluation, scipy, FastAPI, torch).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False
        self._loaded: dict[str, TyperGroup] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        """Every command name, in the listing's order."""
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> TyperCommand | TyperGroup | None:
        """The command called ``cmd_name``, importing its module (a stub while listing)."""
        if cmd_name not in COMMANDS:
            return None
        module_name, short_help = COMMANDS[cmd_name]
        if self._listing:
            return TyperCommand(cmd_name, help=short_help)
        command = self._group_of(module_name).commands.get(cmd_name)
        return command if isinstance(command, TyperCommand | TyperGroup) else None

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The help page, listing commands from :data:`COMMANDS` without importing them."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def _group_of(self, module_name: str) -> TyperGroup:
        if module_name not in self._loaded:
            module = importlib.import_module(f"llmpick.cli.{module_name}")
            commands = typer.Typer(rich_markup_mode="rich")
            module.register(commands)
            self._loaded[module_name] = typer.main.get_group(commands)
        return self._loaded[module_name]


app = typer.Typer(
    name="llmpick",
    help="Choose the right open-weight LLM for your task, hardware and budget, "
    "then prove the choice on your own data.",
    cls=LazyCommands,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
app.callback()(_common.global_options)


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
