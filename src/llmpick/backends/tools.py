"""Tools and structured output at the Backend seam: what a request may ask, what comes back.

The shapes are OpenAI's (``tools``, ``tool_choice``, ``response_format``,
``message.tool_calls`` and their streamed deltas), so the gateway passes them
through unchanged and every backend reads the same objects. A backend says what
it can honour with ``supports_tools`` / ``supports_response_format``
(:meth:`llmpick.backends.base.Backend.check_request`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FunctionCall",
    "FunctionDef",
    "JsonSchemaFormat",
    "NamedToolChoice",
    "ResponseFormat",
    "ToolCall",
    "ToolCallDelta",
    "ToolDef",
    "merge_tool_call_deltas",
]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FunctionDef(_Shape):
    """A function a model may call: its name and a JSON Schema of its arguments."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def arguments_schema(self) -> dict[str, Any]:
        """The arguments' schema (an object with anything in it when none was given)."""
        return self.parameters or {"type": "object"}


class ToolDef(_Shape):
    """One entry of ``tools``."""

    type: Literal["function"] = "function"
    function: FunctionDef


class _FunctionName(_Shape):
    name: str


class NamedToolChoice(_Shape):
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    type: Literal["function"] = "function"
    function: _FunctionName


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class JsonSchemaFormat(_Shape):
    """``response_format.json_schema``: a named schema, enforced when ``strict``."""

    name: str = Field("response", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Shape):
    """``response_format``: ``text``, ``json_object`` or ``json_schema``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def schema_or_none(self) -> dict[str, Any] | None:
        """The JSON Schema the answer must match: any object for ``json_object``."""
        if self.type == "json_object":
            return {"type": "object"}
        if self.type == "json_schema":
            given = self.json_schema.schema_ if self.json_schema is not None else None
            return given if given is not None else {"type": "object"}
        return None


class FunctionCall(_Shape):
    """The function a call names and its arguments, as JSON text (OpenAI's shape)."""

    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> Any:
        """The arguments as a JSON value (raises ValueError when they are not JSON)."""
        return json.loads(self.arguments) if self.arguments.strip() else {}


class ToolCall(_Shape):
    """One call of ``message.tool_calls``."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class _FunctionDelta(_Shape):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_Shape):
    """A piece of a streamed tool call (OpenAI's ``delta.tool_calls[i]``).

    The first piece of call ``index`` carries its id and name; later ones add to
    its arguments. Local backends send each call whole, in one piece.
    """

    index: int = Field(ge=0)
    id: str | None = None
    type: Literal["function"] | None = None
    function: _FunctionDelta | None = None

    @classmethod
    def whole(cls, index: int, call: ToolCall) -> ToolCallDelta:
        """A whole call as one delta."""
        return cls(
            index=index,
            id=call.id,
            type="function",
            function=_FunctionDelta(name=call.function.name, arguments=call.function.arguments),
        )


def merge_tool_call_deltas(deltas: list[ToolCallDelta]) -> list[ToolCall]:
    """Streamed deltas joined into whole calls, in index order (as the openai SDK does)."""
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
        if delta.id:
            call["id"] = delta.id
        if delta.function is not None:
            if delta.function.name:
                call["name"] += delta.function.name
            if delta.function.arguments:
                call["arguments"] += delta.function.arguments
    return [
        ToolCall(
            id=c["id"] or f"call_{i}",
            function=FunctionCall(name=c["name"], arguments=c["arguments"] or "{}"),
        )
        for i, c in sorted(calls.items())
    ]
