"""``auto``: pick the scorer per row, for datasets that mix kinds of task.

A dataset such as llmpick's bundled sample mixes coding tasks (a ``test``
column), JSON extraction (a ``schema`` column), arithmetic (a numeric expected
answer) and questions with a short text answer. Dataset-wide defaults pick one
scorer for all rows; ``auto`` decides row by row, in this order:

1. a non-empty ``test`` -> ``code_exec`` (with ``entry_point``);
2. a non-empty ``schema`` -> ``json`` against that schema;
3. an expected answer that is a number -> ``numeric``;
4. any other expected answer -> ``contains``;
5. nothing to compare with -> the ``judge`` when one is given, else no score.

The explanation names the scorer used, so a score can be traced.
"""

from __future__ import annotations

from typing import Any

from llmpick.evaluate.scorers.base import Cell, JudgeFn, Score, Scorer
from llmpick.evaluate.scorers.code import code_exec
from llmpick.evaluate.scorers.json_output import json_valid
from llmpick.evaluate.scorers.text import contains, numeric

__all__ = ["auto", "row_kind"]


def _filled(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def row_kind(row: dict[str, Any], expected: str | None) -> str:
    """Which scorer ``auto`` uses for a row: code_exec, json, numeric, contains or judge."""
    from llmpick.evaluate.scorers.registry import _is_number

    if _filled(row.get("test")):
        return "code_exec"
    if _filled(row.get("schema")):
        return "json"
    if _filled(expected):
        return "numeric" if _is_number(expected) else "contains"
    return "judge"


def auto(timeout_s: float = 10.0, judge: JudgeFn | None = None) -> Scorer:
    """Score each row with the scorer its columns call for (see the module docstring)."""
    scorers: dict[str, Scorer] = {
        "code_exec": code_exec(timeout_s=timeout_s),
        "json": json_valid(schema_column="schema"),
        "numeric": numeric(),
        "contains": contains(),
    }
    judged: Scorer | None = None
    if judge is not None:
        from llmpick.evaluate.scorers.judge import judge as judge_factory

        judged = judge_factory(judge=judge)

    def score(cell: Cell) -> Any:
        kind = row_kind(cell.row, cell.expected)
        if kind == "judge":
            if judged is None:
                return Score(
                    value=None,
                    label="no-reference",
                    explanation=f"row {cell.row_id}: no test, schema or expected answer",
                )
            return judged(cell)
        result = scorers[kind](cell)
        assert isinstance(result, Score)
        return result.model_copy(update={"explanation": f"[{kind}] {result.explanation}"})

    return score
