"""The run's progress bar: cells generated and scores computed, on stderr."""

from __future__ import annotations

from typing import Any

__all__ = ["RunProgress"]


class RunProgress:
    """A Rich progress bar on stderr (cells generated, scores computed), or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.bar: Any = None
        self.cells: Any = None
        self.scores: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description:<24}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    def __enter__(self) -> RunProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start_cells(self, total: int, done: int) -> None:
        """Show the cells bar, ``done`` of ``total`` already there."""
        if self.bar is not None:
            self.cells = self.bar.add_task("generating", total=total, completed=done)

    def advance(self, model: str) -> None:
        """Count one more finished cell of ``model``."""
        if self.bar is not None and self.cells is not None:
            self.bar.update(self.cells, advance=1, description=f"generating {model}"[:24])

    def add_scoring(self, n: int) -> None:
        """Add ``n`` scorer calls to the scoring bar."""
        if self.bar is None:
            return
        if self.scores is None:
            self.scores = self.bar.add_task("scoring", total=0)
        self.bar.update(self.scores, total=self.bar.tasks[self.scores].total + n)

    def scored(self) -> None:
        """Count one more finished scorer call."""
        if self.bar is not None and self.scores is not None:
            self.bar.update(self.scores, advance=1)
