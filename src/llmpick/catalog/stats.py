"""How much of the catalog was checked at its sources: ``llmpick catalog --stats``.

A *field* is one number a card states: each architecture value (the
``config.json`` fields: layers, heads, KV heads, head_dim, hidden, intermediate,
vocab, max positions, window, experts…) and each benchmark figure. An
architecture block is verified as a whole (its ``verified`` flag covers every
value in it, all read from one ``config.json``); a benchmark figure on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from llmpick.catalog.schema import Architecture, ModelCard

__all__ = ["CatalogStats", "FieldCount", "catalog_stats"]

#: Architecture fields that are not numbers read from config.json.
_NOT_COUNTED = {"model_type", "source", "verified", "layer_types", "tie_word_embeddings"}


class FieldCount(BaseModel):
    """Fields of one kind and how many of them were checked at their source."""

    kind: str
    fields: int = Field(ge=0)
    verified: int = Field(ge=0)

    @property
    def share_verified(self) -> float:
        """Verified fields over all fields (0.0 when there are none)."""
        return self.verified / self.fields if self.fields else 0.0


class CatalogStats(BaseModel):
    """Cards, fields and the share of fields verified at their source."""

    schema_version: int = 1
    cards: int
    cards_fully_verified: int
    kinds: list[FieldCount]

    @property
    def fields(self) -> int:
        """Fields of every kind."""
        return sum(k.fields for k in self.kinds)

    @property
    def verified(self) -> int:
        """Verified fields of every kind."""
        return sum(k.verified for k in self.kinds)

    @property
    def share_verified(self) -> float:
        """Verified fields over all fields."""
        return self.verified / self.fields if self.fields else 0.0

    def as_json(self) -> dict[str, object]:
        """The stats with the derived totals and shares, for ``--format json``."""
        return {
            **self.model_dump(exclude={"kinds"}),
            "fields": self.fields,
            "verified": self.verified,
            "share_verified": round(self.share_verified, 4),
            "kinds": [
                {**k.model_dump(), "share_verified": round(k.share_verified, 4)} for k in self.kinds
            ],
        }


def architecture_field_count(architecture: Architecture) -> int:
    """Numbers in an architecture block (unset optional fields do not count)."""
    values = architecture.model_dump(exclude=_NOT_COUNTED)
    return sum(value is not None for value in values.values())


def catalog_stats(cards: Iterable[ModelCard]) -> CatalogStats:
    """Count cards and fields, and the verified ones, over ``cards``."""
    cards = list(cards)
    arch_fields = arch_verified = bench_fields = bench_verified = complete = 0
    for card in cards:
        count = architecture_field_count(card.architecture)
        arch_fields += count
        arch_verified += count if card.architecture.verified else 0
        bench_fields += len(card.benchmarks)
        checked = sum(b.verified for b in card.benchmarks)
        bench_verified += checked
        if card.architecture.verified and checked == len(card.benchmarks):
            complete += 1
    return CatalogStats(
        cards=len(cards),
        cards_fully_verified=complete,
        kinds=[
            FieldCount(kind="architecture", fields=arch_fields, verified=arch_verified),
            FieldCount(kind="benchmark", fields=bench_fields, verified=bench_verified),
        ],
    )
