"""A plugin registry kept on an object, fed by entry points.

Built-in backends and scorers are declared as entry points in llmpick's own
``pyproject.toml`` — the same way a third-party package adds one — so there is
one way in. Nothing is loaded at import time: a registry loads its entry
points the first time it is asked for a name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to plugins, from entry points in ``group`` and explicit registration."""

    def __init__(
        self,
        group: str,
        kind: str,
        make_error: Callable[[str, str], Exception],
        load_entry_points: bool = True,
    ) -> None:
        self.group = group
        self.kind = kind
        self._make_error = make_error
        self._items: dict[str, T] = {}
        self._pending: dict[str, EntryPoint] = {}
        self._broken: dict[str, str] = {}
        self._loaded = not load_entry_points

    def _discover(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        found: Iterable[EntryPoint] = entry_points(group=self.group)
        for ep in found:
            self._pending.setdefault(ep.name, ep)

    def register(self, name: str, item: T) -> None:
        """Add or replace ``name``."""
        self._items[name] = item
        self._pending.pop(name, None)

    def names(self) -> list[str]:
        """Every name known, loaded or not."""
        self._discover()
        return sorted(set(self._items) | set(self._pending))

    def get(self, name: str) -> T:
        """The plugin called ``name``; loads its entry point on first use."""
        self._discover()
        if name in self._items:
            return self._items[name]
        ep = self._pending.get(name)
        if ep is None:
            known = ", ".join(self.names()) or "none"
            raise self._make_error(f"unknown {self.kind} '{name}'", f"known {self.kind}s: {known}")
        try:
            item: T = ep.load()
        except ImportError as exc:
            raise self._make_error(
                f"{self.kind} '{name}' from entry point {ep.value} failed to import: {exc}",
                "reinstall the package that provides it",
            ) from exc
        self.register(name, item)
        return item
