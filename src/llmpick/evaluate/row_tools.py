"""A dataset row's request fields: tools, tool_choice, parallel_tool_calls, response_format.

A JSONL (or JSON) row may carry them in OpenAI's shapes (a CSV cell may hold
them as JSON text); the runner passes them into every model's
:class:`~llmpick.backends.base.GenerationRequest`, so a local model calls tools
or answers JSON under its grammar, and ``tool_call`` / ``json`` score the result.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from llmpick.backends.tools import ResponseFormat, ToolChoice, ToolDef
from llmpick.errors import DataError, first_invalid

__all__ = ["REQUEST_COLUMNS", "RowRequest", "row_request"]

#: the row columns read as request fields
REQUEST_COLUMNS = ("tools", "tool_choice", "parallel_tool_calls", "response_format")


class RowRequest(BaseModel):
    """What a row adds to the request beyond its messages (all None for a plain row)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    def fields(self) -> dict[str, Any]:
        """The fields that are set, as JSON (for the request and the cache key)."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


_ADAPTER = TypeAdapter(RowRequest)


def row_request(record: dict[str, Any], where: str) -> RowRequest:
    """Read a row's request fields; raise DataError naming the row and field when one is bad."""
    given: dict[str, Any] = {}
    for column in REQUEST_COLUMNS:
        value = record.get(column)
        if value is None or value == "":
            continue
        # tool_choice may be a plain word (auto); everything else is JSON when text
        if isinstance(value, str) and (column != "tool_choice" or value.lstrip().startswith("{")):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise DataError(f"{where}: column '{column}' is not JSON: {exc}") from exc
        given[column] = value
    try:
        return _ADAPTER.validate_python(given)
    except ValidationError as exc:
        field, why = first_invalid(exc)
        raise DataError(
            f"{where}: '{field}' is not a valid request field: {why}",
            "use OpenAI's shapes: tools=[{type: function, function: {name, parameters}}], "
            "tool_choice auto|none|required|{type: function, function: {name}}, "
            "response_format {type: json_object|json_schema, json_schema: {name, schema}}",
        ) from exc
