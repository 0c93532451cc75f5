"""Side-by-side comparison of catalog cards: the table people build by hand.

``compare_rows(cards)`` returns one row per fact (spec, context, license,
benchmark, price) with one column per model, a ``winner`` where "higher/lower
is better" means something, and a ``flag`` when sources for the same benchmark
disagree by more than ``DISAGREEMENT_POINTS``. Every benchmark cell lists all
sources side by side; nothing is averaged or silently merged. A figure nobody
checked at its source is marked ``unverified``, and a third-party figure that the
maker's own figure contradicts is marked so (ranking never counts it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llmpick.catalog.schema import Benchmark, ModelCard

__all__ = ["DISAGREEMENT_POINTS", "CompareRow", "card_to_json", "compare_rows"]

#: Two sources for the same benchmark and model disagree above this many points.
DISAGREEMENT_POINTS = 3.0

Better = Literal["higher", "lower"] | None


@dataclass
class CompareRow:
    """One fact across the compared models."""

    section: str
    label: str
    cells: dict[str, str]
    better: Better = None
    winner: str | None = None
    flag: str | None = None
    sources: list[str] = field(default_factory=list)

    def as_dict(self, ids: Sequence[str]) -> dict[str, Any]:
        """Return a flat dict with one key per model id (for CSV / markdown export)."""
        row: dict[str, Any] = {"section": self.section, "field": self.label}
        row.update({model_id: self.cells.get(model_id, "") for model_id in ids})
        row["winner"] = self.winner or ""
        row["flag"] = self.flag or ""
        return row


def _count(n: int) -> str:
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _winner(
    cards: Sequence[ModelCard], value: Callable[[ModelCard], float | None], better: Better
) -> str | None:
    if better is None:
        return None
    scored = [(v, c.id) for c in cards if (v := value(c)) is not None]
    if len(scored) < 2:
        return None
    best = max(v for v, _ in scored) if better == "higher" else min(v for v, _ in scored)
    winners = [card_id for v, card_id in scored if v == best]
    return winners[0] if len(winners) == 1 else "tie"


def _row(
    section: str,
    label: str,
    cards: Sequence[ModelCard],
    text: Callable[[ModelCard], str],
    value: Callable[[ModelCard], float | None] | None = None,
    better: Better = None,
) -> CompareRow:
    return CompareRow(
        section=section,
        label=label,
        cells={c.id: text(c) for c in cards},
        better=better,
        winner=_winner(cards, value, better) if value is not None else None,
    )


def _spec_rows(cards: Sequence[ModelCard]) -> list[CompareRow]:
    def sliding(card: ModelCard) -> str:
        windows = card.architecture.attention_windows()
        local = sum(w is not None for w in windows)
        if not local:
            return "none (full attention)"
        return f"{local}/{len(windows)} layers, window {card.architecture.sliding_window}"

    def experts(card: ModelCard) -> str:
        a = card.architecture
        return f"{a.num_experts_per_tok} of {a.num_experts}" if a.is_moe else "dense"

    rows = [
        _row("model", "family / version", cards, lambda c: f"{c.family} {c.version}"),
        _row("model", "release date", cards, lambda c: str(c.release_date or "")),
        _row("model", "params total", cards, lambda c: _count(c.params.total)),
        _row(
            "model",
            "params active per token",
            cards,
            lambda c: _count(c.params.active_or_total) + (" (MoE)" if c.params.is_moe else ""),
            lambda c: float(c.params.active_or_total),
            "lower",
        ),
        _row("model", "experts", cards, experts),
        _row("architecture", "layers", cards, lambda c: str(c.architecture.num_hidden_layers)),
        _row(
            "architecture",
            "attention / KV heads",
            cards,
            lambda c: (
                f"{c.architecture.num_attention_heads} / {c.architecture.num_key_value_heads}"
            ),
        ),
        _row("architecture", "head_dim", cards, lambda c: str(c.architecture.head_dim)),
        _row("architecture", "hidden_size", cards, lambda c: str(c.architecture.hidden_size)),
        _row("architecture", "vocab_size", cards, lambda c: str(c.architecture.vocab_size)),
        _row("architecture", "sliding window", cards, sliding),
        _verified_row(cards),
        _row(
            "architecture",
            "KV cache per token, f16 (ignoring windows)",
            cards,
            lambda c: f"{c.architecture.kv_cache_bytes_per_token() / 1024:.0f} KiB",
            lambda c: c.architecture.kv_cache_bytes_per_token(),
            "lower",
        ),
        _row(
            "context",
            "native context",
            cards,
            lambda c: f"{c.context.native:,}",
            lambda c: float(c.context.native),
            "higher",
        ),
        _row(
            "context",
            "max context",
            cards,
            lambda c: (
                f"{c.context.max:,}" + (f" ({c.context.extension})" if c.context.extension else "")
            ),
            lambda c: float(c.context.max),
            "higher",
        ),
        _row(
            "context",
            "max input tokens",
            cards,
            lambda c: (
                f"{c.context.max_input_tokens:,}"
                if c.context.max_input_tokens
                else "the whole window"
            ),
        ),
        _row(
            "context",
            "max output tokens",
            cards,
            lambda c: f"{c.max_output_tokens.value:,}" if c.max_output_tokens else "not documented",
            lambda c: float(c.max_output_tokens.value) if c.max_output_tokens else None,
            "higher",
        ),
        _row("license", "license", cards, lambda c: c.license.name),
        _row(
            "license",
            "commercial use",
            cards,
            lambda c: (
                ("yes" if c.license.commercial_use else "no")
                + (f" ({'; '.join(c.license.restrictions)})" if c.license.restrictions else "")
            ),
        ),
        _row("license", "permissive", cards, lambda c: "yes" if c.license.permissive else "no"),
        _row(
            "model",
            "training tokens",
            cards,
            lambda c: _count(c.training_tokens.value) if c.training_tokens else "",
        ),
        _row("model", "languages", cards, lambda c: ", ".join(c.languages)),
        _row("model", "specialization", cards, lambda c: ", ".join(c.specialization)),
    ]
    return rows


def _verified_row(cards: Sequence[ModelCard]) -> CompareRow:
    row = _row(
        "architecture",
        "checked against config.json",
        cards,
        lambda c: "yes" if c.architecture.verified else "unverified",
    )
    unchecked = [c.id for c in cards if not c.architecture.verified]
    if unchecked:
        row.flag = "architecture unverified: " + ", ".join(unchecked)
    return row


def _score_text(b: Benchmark, card: ModelCard) -> str:
    tags = []
    if b.origin == "third-party":
        tags.append("third-party")
        against = card.contradicting(b)
        if against:
            shown = "/".join(f"{m.value:g}" for m in against)
            tags.append(f"contradicted by the maker's {shown}; not used for ranking")
    if not b.verified:
        tags.append("unverified")
    suffix = f" [{'; '.join(tags)}]" if tags else ""
    return f"{b.value:g} ({b.protocol.describe()}; {b.source}){suffix}"


def _benchmark_rows(cards: Sequence[ModelCard]) -> list[CompareRow]:
    names: list[str] = []
    for card in cards:
        for b in card.benchmarks:
            if b.name not in names:
                names.append(b.name)
    rows = []
    for name in names:
        cells: dict[str, str] = {}
        flags: list[str] = []
        sources: list[str] = []
        for card in cards:
            scores = card.scores(name)
            cells[card.id] = " | ".join(_score_text(b, card) for b in scores)
            sources += [b.source for b in scores]
            values = [b.value for b in scores]
            if len(values) > 1 and max(values) - min(values) > DISAGREEMENT_POINTS:
                flags.append(f"{card.id}: sources differ by {max(values) - min(values):.1f} points")
            if any(card.contradicting(b) for b in scores):
                flags.append(f"{card.id}: a third-party figure contradicts the maker's")
            unverified = sum(not b.verified for b in scores)
            if unverified:
                flags.append(f"{card.id}: {unverified} of {len(scores)} figures unverified")

        def maker_best(card: ModelCard, name: str = name) -> float | None:
            # A base model's score printed on an instruct card is context, not a contender.
            made = [
                b.value
                for b in card.scores(name)
                if b.origin == "maker" and not (b.protocol.variant or "").startswith("base model")
            ]
            return max(made) if made else None

        row = CompareRow(
            section="benchmark",
            label=name,
            cells=cells,
            better="higher",
            winner=_winner(cards, maker_best, "higher"),
            flag="; ".join(flags) or None,
            sources=sources,
        )
        if row.winner and _protocols_differ(cards, name):
            row.flag = "; ".join(filter(None, [row.flag, "protocols differ across models"]))
        rows.append(row)
    return rows


def _protocols_differ(cards: Sequence[ModelCard], name: str) -> bool:
    protocols = set()
    for card in cards:
        for b in card.scores(name):
            if b.origin == "maker":
                protocols.add((b.protocol.shots, b.protocol.cot))
    return len(protocols) > 1


def _price_rows(cards: Sequence[ModelCard]) -> list[CompareRow]:
    if not any(c.prices for c in cards):
        return []

    def cheapest(card: ModelCard) -> float | None:
        totals = [p.input_usd_per_mtok + p.output_usd_per_mtok for p in card.prices]
        return min(totals) if totals else None

    def text(card: ModelCard) -> str:
        return " | ".join(
            f"{p.provider}: ${p.input_usd_per_mtok:g} in / ${p.output_usd_per_mtok:g} out "
            f"per 1M tokens ({p.date}; {p.source})"
            for p in card.prices
        )

    return [_row("price", "API price", cards, text, cheapest, "lower")]


def compare_rows(cards: Sequence[ModelCard]) -> list[CompareRow]:
    """Rows comparing ``cards``: specs, context, license, benchmarks, prices."""
    return _spec_rows(cards) + _benchmark_rows(cards) + _price_rows(cards)


def card_to_json(card: ModelCard) -> dict[str, Any]:
    """Return the card as plain JSON-ready data (dates as ISO strings)."""
    return card.model_dump(mode="json")
