"""What the evaluation's cells say: per-row scores, samples, failures, why nothing scored."""

from __future__ import annotations

from typing import Any


def _row_scores(cells: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, list[float]]] = {}
    for cell in cells:
        if cell["score"] is not None:
            table.setdefault(cell["model"], {}).setdefault(cell["row_id"], []).append(cell["score"])
    return {m: {r: sum(v) / len(v) for r, v in rows.items()} for m, rows in table.items()}


def _why_unscored(cells: list[dict[str, Any]]) -> str:
    """Say why no model got a score: failed generations, or a scorer that gave no values."""
    reasons = [
        (key, f"{s['label']}: {s['explanation'][:160]}")
        for c in cells
        for key, s in c["scores"].items()
        if s.get("value") is None and s.get("explanation")
    ]
    if reasons:
        return (
            f"no candidate produced scores: the scorer {reasons[0][0]} gave no values, "
            f"e.g. {reasons[0][1]}; choose another --scorer or a stronger --judge"
        )
    return "no candidate produced scores; see the failures"


def _samples(
    table: list[dict[str, Any]], dataset: Any, per_category: int = 2
) -> list[dict[str, Any]]:
    """A few rows per category, for the side-by-side view."""
    categories = {r.id: r.category or "" for r in dataset.rows}
    taken: dict[str, int] = {}
    picked = []
    for line in table:
        category = categories.get(line["row_id"], "")
        if taken.get(category, 0) < per_category:
            taken[category] = taken.get(category, 0) + 1
            picked.append({"category": category, **line})
    return picked


def _failures(cells: list[dict[str, Any]], limit: int = 40) -> list[dict[str, Any]]:
    """Cells that errored or scored below 1, with the scorer's explanation."""
    out = []
    for cell in cells:
        if cell["error"] is None and (cell["score"] is None or cell["score"] >= 1.0):
            continue
        explanation = next(
            (s["explanation"] for s in cell["scores"].values() if s.get("explanation")), ""
        )
        out.append(
            {
                "row_id": cell["row_id"],
                "category": cell["category"],
                "model": cell["model"],
                "expected": cell["expected"],
                "output": (cell["output"] or "")[:400],
                "score": cell["score"],
                "why": cell["error"] or explanation,
            }
        )
    out.sort(key=lambda c: (c["row_id"], c["model"]))
    return out[:limit]
