"""Load and index the catalog: ``data/*.yaml``, one file per model family.

Each YAML file holds ``models:``, a list of model cards (see
:mod:`llmpick.catalog.schema`). YAML anchors and merge keys (``<<: *llama31``)
are allowed so a family can share its license block.

``load_catalog()`` reads the package data once per process (cached);
``Catalog.from_files()`` reads any files, for tests and for user catalogs.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llmpick.catalog.schema import ModelCard
from llmpick.errors import CatalogError, ModelNotFoundError

__all__ = ["Catalog", "load_catalog"]

_DATA_PACKAGE = "llmpick.catalog"


def _normalise(name: str) -> str:
    return name.strip().lower()


def _short_name(model_id: str) -> str:
    return model_id.rsplit("/", 1)[-1]


class Catalog:
    """A validated, indexed set of model cards.

    Lookup is case-insensitive by canonical id (the Hugging Face repo id), by
    the repo name without its organisation, by alias, and by old repo id.
    """

    def __init__(self, cards: Sequence[ModelCard]) -> None:
        self.cards: list[ModelCard] = list(cards)
        self._index: dict[str, ModelCard] = {}
        self._short: dict[str, list[ModelCard]] = {}
        for card in self.cards:
            for name in card.names:
                key = _normalise(name)
                other = self._index.get(key)
                if other is not None:
                    raise CatalogError(
                        f"catalog name {name!r} is used by both {other.id} and {card.id}",
                        "each id, alias and old id must be unique",
                    )
                self._index[key] = card
            for name in (card.id, *card.old_ids):
                self._short.setdefault(_normalise(_short_name(name)), []).append(card)

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> Catalog:
        """Read and validate the given YAML files."""
        cards: list[ModelCard] = []
        for path in sorted(paths):
            cards.extend(_parse_document(path.read_text(encoding="utf-8"), path.name))
        return cls(cards)

    def __len__(self) -> int:
        return len(self.cards)

    def __iter__(self) -> Any:
        return iter(self.cards)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def find(self, name: str) -> ModelCard | None:
        """Return the card called ``name``, or None."""
        key = _normalise(name)
        card = self._index.get(key)
        if card is not None:
            return card
        if "/" not in key:
            matches = self._short.get(key, [])
            if len(matches) == 1:
                return matches[0]
        return None

    def get(self, name: str) -> ModelCard:
        """Return the card called ``name``; raise ModelNotFoundError with close matches."""
        card = self.find(name)
        if card is not None:
            return card
        raise ModelNotFoundError(
            f"unknown model {name!r} in the catalog", self._suggestion_hint(name)
        )

    def suggestions(self, name: str, limit: int = 3) -> list[str]:
        """Up to ``limit`` catalog names close to ``name``."""
        key = _normalise(name)
        candidates: dict[str, str] = {}
        for card in self.cards:
            for known in card.names:
                candidates.setdefault(_normalise(known), card.id)
                candidates.setdefault(_normalise(_short_name(known)), card.id)
        close = difflib.get_close_matches(key, list(candidates), n=limit * 4, cutoff=0.6)
        if "/" not in key:
            close += difflib.get_close_matches(
                _short_name(key), list(candidates), n=limit * 4, cutoff=0.6
            )
        ids: list[str] = []
        for match in close:
            card_id = candidates[match]
            if card_id not in ids:
                ids.append(card_id)
        return ids[:limit]

    def _suggestion_hint(self, name: str) -> str:
        close = self.suggestions(name)
        if close:
            return "did you mean: " + ", ".join(close) + "?"
        return f"the catalog has {len(self.cards)} models; ids are Hugging Face repo ids"

    def search(
        self,
        text: str | None = None,
        *,
        family: str | None = None,
        specialization: str | None = None,
        language: str | None = None,
        commercial_use: bool | None = None,
        permissive: bool | None = None,
        max_params: int | None = None,
        min_context: int | None = None,
    ) -> list[ModelCard]:
        """Cards matching every given filter (``text`` is a substring of any name)."""
        out = []
        for card in self.cards:
            if text and not any(text.lower() in n.lower() for n in card.names):
                continue
            if family and card.family.lower() != family.lower():
                continue
            if specialization and specialization not in card.specialization:
                continue
            if language and language not in card.languages:
                continue
            if commercial_use is not None and card.license.commercial_use != commercial_use:
                continue
            if permissive is not None and card.license.permissive != permissive:
                continue
            if max_params is not None and card.params.total > max_params:
                continue
            if min_context is not None and card.context.max < min_context:
                continue
            out.append(card)
        return out


def _parse_document(text: str, origin: str) -> list[ModelCard]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"catalog file {origin} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError(f"catalog file {origin} must be a mapping with a 'models' list")
    cards = []
    for position, entry in enumerate(data["models"]):
        if not isinstance(entry, dict):
            raise CatalogError(f"{origin}: entry {position} is not a mapping")
        try:
            cards.append(ModelCard.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CatalogError(
                f"{origin}: model {entry.get('id', position)!r}: {where}: {first['msg']}",
                f"{exc.error_count()} error(s) in this entry; fix the YAML",
            ) from exc
    return cards


def _data_files() -> list[tuple[str, str]]:
    root = resources.files(_DATA_PACKAGE).joinpath("data")
    return sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in root.iterdir()
        if entry.name.endswith(".yaml")
    )


@functools.cache
def load_catalog() -> Catalog:
    """Return the bundled catalog (every ``catalog/data/*.yaml``), validated; cached."""
    cards: list[ModelCard] = []
    for name, text in _data_files():
        cards.extend(_parse_document(text, name))
    return Catalog(cards)
