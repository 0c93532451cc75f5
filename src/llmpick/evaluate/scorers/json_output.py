"""The ``json`` scorer: the output holds valid JSON, optionally matching a JSON Schema.

The JSON is the whole output, else the first fenced code block, else the first
``{…}`` or ``[…]`` that parses. The schema comes from ``schema`` (inline),
``schema_file`` (checked when the scorer is built) or ``schema_column`` (a
dict or JSON text per row; rows can be checked up front with
:meth:`JsonScorer.check_rows`). A column may also hold a row's OpenAI
``response_format`` (``{"type": "json_schema", "json_schema": {"schema": ...}}``,
or ``json_object``: any object), so ``json:schema_column=response_format``
checks what the row asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from llmpick.errors import ScorerError
from llmpick.evaluate.scorers.base import Cell, Score

__all__ = ["JsonScorer", "extract_json", "json_valid"]

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_MISSING = object()


def extract_json(text: str) -> Any:
    """Return the JSON value in ``text``; raise ValueError when there is none."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for _lang, body in _FENCE.findall(text):
        try:
            return json.loads(body)
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _end = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        return value
    raise ValueError("no JSON value found")


def _unwrap_response_format(schema: Any) -> Any:
    """The schema inside an OpenAI ``response_format``; anything else as it is.

    ``json_object`` and ``json_schema`` are not JSON Schema types, so a schema is
    never mistaken for a response_format.
    """
    if not isinstance(schema, Mapping):
        return schema
    if schema.get("type") == "json_object":
        return {"type": "object"}
    if schema.get("type") == "json_schema":
        inner = schema.get("json_schema")
        given = inner.get("schema") if isinstance(inner, Mapping) else None
        return given if given is not None else {"type": "object"}
    return schema


def _checked_schema(schema: Any, where: str) -> Any:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ScorerError(f"the JSON Schema in {where} is not JSON: {exc}") from exc
    schema = _unwrap_response_format(schema)
    if not isinstance(schema, Mapping | bool):
        raise ScorerError(f"the JSON Schema in {where} must be an object")
    try:
        checked: Any = schema  # a dict or a boolean schema
        validator_for(checked).check_schema(checked)
    except SchemaError as exc:
        raise ScorerError(
            f"invalid JSON Schema in {where}: {exc.message}",
            "see https://json-schema.org/understanding-json-schema/",
        ) from exc
    return schema


class JsonScorer:
    """Scores 1 when the output parses as JSON (and matches the schema, if any)."""

    def __init__(self, schema: Any, schema_column: str | None) -> None:
        self.schema = schema
        self.schema_column = schema_column

    def check_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Raise ScorerError now if any row's schema column is missing or invalid."""
        if self.schema_column is None:
            return
        for index, row in enumerate(rows):
            self._row_schema(row, f"row {row.get('id', index)}")

    def _row_schema(self, row: Mapping[str, Any], where: str) -> Any:
        assert self.schema_column is not None
        value = row.get(self.schema_column, _MISSING)
        if value is _MISSING or value is None or value == "":
            return None
        return _checked_schema(value, f"column '{self.schema_column}' of {where}")

    def __call__(self, cell: Cell) -> Score:
        """Score one cell."""
        schema = self.schema
        if self.schema_column is not None:
            schema = self._row_schema(cell.row, f"row {cell.row_id}")
        try:
            value = extract_json(cell.output)
        except ValueError:
            return Score(value=0.0, label="invalid-json", explanation="no valid JSON in the output")
        if schema is None:
            return Score(value=1.0, label="pass", explanation="valid JSON")
        error = jsonschema.exceptions.best_match(validator_for(schema)(schema).iter_errors(value))
        if error is not None:
            path = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return Score(
                value=0.0, label="schema-mismatch", explanation=f"at {path}: {error.message}"
            )
        return Score(value=1.0, label="pass", explanation="valid JSON matching the schema")


def json_valid(
    schema: Any = None, schema_file: str | None = None, schema_column: str | None = None
) -> JsonScorer:
    """Score 1 for valid JSON in the output, optionally checked against a JSON Schema.

    ``schema``: inline (dict or JSON text); ``schema_file``: a path;
    ``schema_column``: a row column holding the schema. Give at most one.
    """
    given = [x for x in (schema, schema_file, schema_column) if x is not None]
    if len(given) > 1:
        raise ScorerError("json takes one of schema, schema_file, schema_column")
    resolved = None
    if schema is not None:
        resolved = _checked_schema(schema, "the 'schema' argument")
    if schema_file is not None:
        path = Path(schema_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScorerError(f"cannot read JSON Schema file {path}: {exc.strerror}") from exc
        resolved = _checked_schema(text, str(path))
    return JsonScorer(resolved, schema_column)
