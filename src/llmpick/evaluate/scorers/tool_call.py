"""The ``tool_call`` scorer: the model called the expected functions with the expected arguments.

The expected calls come from a row column (``expected`` by default): one call
``{"name": ..., "arguments": {...}}``, a list of them (parallel calls), OpenAI's
shape (``{"function": {"name": ..., "arguments": "<JSON text>"}}``), or that as
JSON text; ``[]`` expects an answer without a call. The model's calls are the
cell's ``tool_calls`` (what the backend returned, read back from the stored raw
output). Arguments are compared as JSON values: key order and spacing do not
matter, ``1`` equals ``1.0``, ``true`` is not ``1``.

Options: ``ignore_extra_arguments`` (the model may pass arguments the expected
call does not name, at any depth of an object), ``ignore_order`` (parallel calls
in any order). Each cell scores 1 or 0 with a label and an explanation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmpick.errors import ScorerError
from llmpick.evaluate.scorers.base import Cell, Score

__all__ = ["ExpectedCall", "ToolCallScorer", "expected_calls", "json_equal", "tool_call"]


class ExpectedCall(BaseModel):
    """A call a row expects: the function's name and its arguments as a JSON value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    arguments: Any = None


def _one_call(value: Any, where: str) -> ExpectedCall:
    if not isinstance(value, dict):
        raise ScorerError(f"{where}: an expected call must be an object with a 'name'")
    if isinstance(value.get("function"), dict):
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ScorerError(f"{where}: an expected call needs a function 'name'")
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            raise ScorerError(f"{where}: the arguments of '{name}' are not JSON: {exc}") from exc
    return ExpectedCall(name=name, arguments=arguments)


def expected_calls(value: Any, where: str) -> list[ExpectedCall]:
    """The calls a row's column expects (see the module docstring for the shapes)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ScorerError(f"{where}: expected tool calls are not JSON: {exc}") from exc
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]
    items = value if isinstance(value, list) else [value]
    return [_one_call(item, where) for item in items]


def json_equal(actual: Any, expected: Any, *, ignore_extra: bool = False) -> bool:
    """Equal as JSON values; with ``ignore_extra`` an object may hold keys ``expected`` lacks."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and actual == expected
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(actual) == float(expected)
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        if not ignore_extra and set(actual) != set(expected):
            return False
        return all(
            k in actual and json_equal(actual[k], v, ignore_extra=ignore_extra)
            for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(
                json_equal(a, e, ignore_extra=ignore_extra)
                for a, e in zip(actual, expected, strict=True)
            )
        )
    return type(actual) is type(expected) and actual == expected


def _compact(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


class ToolCallScorer:
    """Scores 1 when the cell's tool calls match the row's expected calls."""

    def __init__(self, column: str, ignore_extra_arguments: bool, ignore_order: bool) -> None:
        self.column = column
        self.ignore_extra_arguments = ignore_extra_arguments
        self.ignore_order = ignore_order

    def _matches(self, actual: ExpectedCall, expected: ExpectedCall) -> bool:
        return actual.name == expected.name and json_equal(
            actual.arguments, expected.arguments, ignore_extra=self.ignore_extra_arguments
        )

    def _mismatch(self, actual: ExpectedCall, expected: ExpectedCall) -> tuple[str, str]:
        if actual.name != expected.name:
            return "wrong-function", f"called {actual.name}, expected {expected.name}"
        return (
            "wrong-arguments",
            f"{actual.name} got {_compact(actual.arguments)}, "
            f"expected {_compact(expected.arguments)}",
        )

    def _unordered(self, actual: list[ExpectedCall], expected: list[ExpectedCall]) -> bool:
        """Every expected call matched by a distinct actual one (backtracking: lists are short)."""

        def assign(i: int, used: frozenset[int]) -> bool:
            if i == len(expected):
                return True
            return any(
                j not in used and self._matches(a, expected[i]) and assign(i + 1, used | {j})
                for j, a in enumerate(actual)
            )

        return assign(0, frozenset())

    def check_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Raise ScorerError now if any row lacks the column or its expected calls are malformed."""
        for index, row in enumerate(rows):
            where = f"row {row.get('id', index + 1)}"
            if self.column not in row:
                raise ScorerError(
                    f"{where} has no column '{self.column}' with the expected tool calls",
                    "name the column with tool_call:column=NAME",
                )
            expected_calls(row[self.column], where)

    def __call__(self, cell: Cell) -> Score:
        """Score one cell."""
        if self.column not in cell.row:
            raise ScorerError(
                f"row {cell.row_id} has no column '{self.column}' with the expected tool calls",
                "name the column with tool_call:column=NAME",
            )
        expected = expected_calls(cell.row[self.column], f"row {cell.row_id}")
        actual: list[ExpectedCall] = []
        for call in cell.tool_calls:
            try:
                arguments = call.function.parsed_arguments()
            except ValueError:
                return Score(
                    value=0.0,
                    label="invalid-arguments",
                    explanation=f"the arguments of {call.function.name} are not JSON: "
                    f"{call.function.arguments[:80]!r}",
                )
            actual.append(ExpectedCall(name=call.function.name, arguments=arguments))
        return self._compare(actual, expected)

    def _compare(self, actual: list[ExpectedCall], expected: list[ExpectedCall]) -> Score:
        names = ", ".join(c.name for c in expected) or "no call"
        if not actual and expected:
            return Score(value=0.0, label="no-call", explanation=f"no tool call; expected {names}")
        if len(actual) != len(expected):
            got = ", ".join(c.name for c in actual) or "no call"
            return Score(
                value=0.0,
                label="wrong-count",
                explanation=f"{len(actual)} calls ({got}), expected {len(expected)} ({names})",
            )
        if not expected:
            return Score(
                value=1.0, label="pass", explanation="answered without a call, as expected"
            )
        if self.ignore_order and len(expected) > 1:
            if self._unordered(actual, expected):
                return Score(value=1.0, label="pass", explanation=f"{names} (in any order)")
            return Score(
                value=0.0,
                label="wrong-calls",
                explanation=f"the calls do not match {names} in any order",
            )
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            if not self._matches(a, e):
                label, why = self._mismatch(a, e)
                where = f"call {index + 1}: " if len(expected) > 1 else ""
                return Score(value=0.0, label=label, explanation=where + why)
        return Score(value=1.0, label="pass", explanation=f"{names} with the expected arguments")


def tool_call(
    column: str = "expected", ignore_extra_arguments: bool = False, ignore_order: bool = False
) -> ToolCallScorer:
    """Score 1 when the model made the row's expected tool calls (name and arguments).

    ``column``: the row column holding the expected calls; ``ignore_extra_arguments``:
    arguments the expected call does not name are allowed; ``ignore_order``:
    parallel calls may come in any order.
    """
    if not column:
        raise ScorerError("tool_call needs a column name", "tool_call:column=expected")
    return ToolCallScorer(column, bool(ignore_extra_arguments), bool(ignore_order))
