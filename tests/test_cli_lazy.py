"""The lazy CLI: ``llmpick --help`` imports no command module, and lists every command.

Each command's module (and what it pulls in: evaluation and scipy, FastAPI, torch) is
imported only when that command runs; the listing comes from ``llmpick.cli.COMMANDS``.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

import llmpick.cli
from llmpick.cli import COMMANDS, app

HEAVY = ("scipy", "fastapi", "torch", "transformers", "uvicorn")


def _imported_after(code: str) -> list[str]:
    """Heavy top-level packages in sys.modules after running ``code`` in a fresh Python."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_imports_nothing_heavy() -> None:
    assert _imported_after("import llmpick.cli") == []


def test_help_imports_no_command_module_and_lists_every_command() -> None:
    code = (
        "import sys\nfrom llmpick.cli import main\nsys.argv = ['llmpick', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('llmpick.cli.')"
        " and m != 'llmpick.cli._common')\nprint('LOADED', loaded)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "LOADED []" in out
    listing = out.split("Commands")[1]
    for name, (_, short_help) in COMMANDS.items():
        assert f" {name} " in listing, name
        assert short_help.split()[0] in listing
    assert _imported_after(code) == []


def test_recommend_does_not_import_evaluation_or_servers() -> None:
    code = (
        "import sys\nfrom llmpick.cli import main\n"
        "sys.argv = ['llmpick', 'recommend', '--task', 'chat', '--device', 'rtx4090']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
    )
    assert _imported_after(code) == []


def test_the_table_matches_every_registered_command_and_its_help() -> None:
    registered: dict[str, str] = {}
    for module_info in pkgutil.iter_modules(llmpick.cli.__path__):
        if module_info.name.startswith("_"):
            continue
        module = __import__(f"llmpick.cli.{module_info.name}", fromlist=["register"])
        commands = typer.Typer()
        module.register(commands)
        group = typer.main.get_group(commands)
        for name, command in group.commands.items():
            registered[name] = module_info.name
            first = (command.short_help or command.help or "").split("\n\n")[0]
            assert " ".join(first.split()) == COMMANDS[name][1], name
    assert registered == {name: module for name, (module, _) in COMMANDS.items()}


def test_a_lazy_command_runs_and_an_unknown_one_is_refused() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["hardware", "--list"])
    assert result.exit_code == 0, result.output
    assert "4090" in result.output
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
