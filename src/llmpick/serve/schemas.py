"""The gateway's OpenAI-compatible request and response bodies.

These pydantic models are what FastAPI validates and what ``/openapi.json``
describes, so the schema matches what the server really accepts. Fields OpenAI
clients commonly send but the gateway does not use (``user``, ``logprobs: false``…)
are accepted and ignored; anything unknown is refused with a 400 that names it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmpick.backends.tools import ResponseFormat, ToolCall, ToolChoice, ToolDef

if TYPE_CHECKING:
    from llmpick.serve.rules import RequestRules

__all__ = [
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionRequest",
    "ChatMessageIn",
    "ChatMessageOut",
    "CompletionChoice",
    "CompletionRequest",
    "CompletionResponse",
    "ErrorBody",
    "ErrorResponse",
    "ModelEntry",
    "ModelList",
    "StreamOptions",
    "TextPart",
    "UsageOut",
    "apply_rules",
]

SCHEMA_VERSION = 1

#: Text without the control characters the rules refuse (``rules._CONTROL``): stated in
#: the schema only, so the rule's 400 (naming the character and offset) stays the check.
TEXT_PATTERN = "^[^\\u0000-\\u0008\\u000e-\\u001b\\u007f-\\u0084\\u0086-\\u009f]*$"
Text = Annotated[str, Field(json_schema_extra={"pattern": TEXT_PATTERN})]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Body):
    """One text part of a message's content (``[{"type": "text", "text": ...}]``)."""

    type: Literal["text"] = "text"
    text: Text


class ChatMessageIn(_Body):
    """A chat message as clients send it.

    An assistant message may carry the ``tool_calls`` it made (``content`` null);
    a ``tool`` message answers the call ``tool_call_id`` names.
    """

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text, parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Body):
    """``stream_options``: ``include_usage`` adds a final chunk with the usage."""

    include_usage: bool = False


class _Sampling(_Body):
    model: str = Field(description="a served model name, or a route such as 'auto'")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: Text | list[Text] | None = None
    seed: int | None = None
    n: Literal[1] = Field(1, description="only one choice per request is generated")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    ignore_eos: bool = Field(
        False,
        description="keep generating to max_tokens past end-of-sequence (the vLLM and"
        " llama.cpp extension load generators send, `llmpick bench` among them)",
    )
    metadata: dict[str, str] | None = Field(
        None, description="'category' picks the route's category explicitly"
    )

    def stops(self) -> tuple[str, ...]:
        """The stop strings as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[ToolDef] | None = Field(
        None, description="functions the model may call (docs/tools.md: how local models obey)"
    )
    tool_choice: ToolChoice | None = Field(
        None, description="auto (default with tools), none, required, or a named function"
    )
    parallel_tool_calls: bool | None = Field(
        None, description="local models make several calls in one answer only when true"
    )
    response_format: ResponseFormat | None = Field(
        None, description="json_object, or json_schema (enforced by grammar on local models)"
    )
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="extra chat-template variables, e.g. {'enable_thinking': false}"
    )
    reasoning_effort: Literal["low", "medium", "high"] | None = None

    def output_limit(self) -> int | None:
        """``max_completion_tokens`` (the newer name) or ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    """``POST /v1/completions`` (a plain prompt)."""

    prompt: Text

    def output_limit(self) -> int | None:
        """``max_tokens``."""
        return self.max_tokens


class UsageOut(BaseModel):
    """Exact token counts of one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatMessageOut(BaseModel):
    """The assistant's answer: text and/or tool calls, and its reasoning apart."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None
    #: the ``<think>`` part of a reasoning model's output (as vLLM and llama.cpp's server name it)
    reasoning_content: str | None = None


class ChatChoice(BaseModel):
    """One choice of a chat completion."""

    index: int = 0
    message: ChatMessageOut
    finish_reason: str | None


class ChatCompletion(BaseModel):
    """A non-streamed chat completion; ``model`` is the model that answered."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: UsageOut


class CompletionChoice(BaseModel):
    """One choice of a plain completion."""

    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: None = None


class CompletionResponse(BaseModel):
    """A non-streamed plain completion."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut


class ModelEntry(BaseModel):
    """One entry of ``GET /v1/models``: a served model or a route."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "llmpick"
    kind: Literal["model", "route"]
    resolves_to: list[str] = Field(default_factory=list)
    description: str = ""


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelEntry]


class ErrorBody(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {...}}``, the body of every error response."""

    error: ErrorBody


def apply_rules(openapi: dict[str, Any], rules: RequestRules) -> dict[str, Any]:
    """Write the configured request rules into ``/openapi.json`` (in place; returned).

    The limits vary with the config, the pydantic models do not: counts of messages
    and stop strings, stop length and the ``max_tokens`` cap are set here so the
    schema says what this gateway accepts.
    """
    schemas = openapi.get("components", {}).get("schemas", {})
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        props = schemas.get(name, {}).get("properties", {})
        if "messages" in props:
            props["messages"]["maxItems"] = rules.max_messages
        for variant in props.get("stop", {}).get("anyOf", []):
            if variant.get("type") == "string":
                variant["maxLength"] = rules.max_stop_chars
            elif variant.get("type") == "array":
                variant["maxItems"] = rules.max_stop
                variant["items"]["maxLength"] = rules.max_stop_chars
        for field in ("max_tokens", "max_completion_tokens"):
            if field in props and rules.max_output_tokens is not None:
                for variant in props[field].get("anyOf", []):
                    if variant.get("type") == "integer":
                        variant["maximum"] = rules.max_output_tokens
    return openapi
