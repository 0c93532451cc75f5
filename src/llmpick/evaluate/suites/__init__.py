"""Built-in suites: ordinary datasets that ship with llmpick's dependencies.

A suite is one small module with a ``load() -> list[dict]`` function and a
``DEFAULT_SCORERS`` list; add it to :data:`SUITES`.
"""

from __future__ import annotations

import importlib
from typing import Any

from llmpick.errors import DataError
from llmpick.evaluate.scorers.base import ScorerSpec

__all__ = ["SUITES", "load_suite"]

#: suite name -> module under llmpick.evaluate.suites
SUITES: dict[str, str] = {
    "humaneval": "llmpick.evaluate.suites.humaneval",
    "tools": "llmpick.evaluate.suites.tools",
}


def load_suite(name: str) -> tuple[list[dict[str, Any]], list[ScorerSpec]]:
    """Return the rows of suite ``name`` and the scorers it is scored with by default."""
    if name not in SUITES:
        raise DataError(f"unknown suite '{name}'", f"built-in suites: {', '.join(SUITES)}")
    module = importlib.import_module(SUITES[name])
    rows: list[dict[str, Any]] = module.load()
    return rows, list(module.DEFAULT_SCORERS)
