"""The gateway's side of tools, structured output and reasoning: request in, message and deltas out.

What a client sends (``tools``, ``tool_choice``, ``response_format``, ``tool``
messages, assistant ``tool_calls``) becomes the backend's
:class:`~llmpick.backends.base.GenerationRequest` unchanged; what the backend
streams (answer text, reasoning, tool-call deltas) becomes OpenAI's
``message`` or ``delta`` objects here. Whether a model can honour the request is
its backend's call (:meth:`Backend.check_request`): the gateway never drops tools.
"""

from __future__ import annotations

from typing import Any

from llmpick.backends.base import Chunk, Message
from llmpick.backends.tools import ToolCallDelta, merge_tool_call_deltas
from llmpick.serve.schemas import ChatCompletionRequest, ChatMessageIn, ChatMessageOut

__all__ = ["Collected", "chat_delta", "generation_options", "message_out", "to_message"]


def to_message(m: ChatMessageIn) -> Message:
    """A client's message as the backends take it (``developer`` is a system message)."""
    return Message(
        role="system" if m.role == "developer" else m.role,
        content=m.text(),
        tool_calls=tuple(m.tool_calls) if m.tool_calls else None,
        tool_call_id=m.tool_call_id,
        name=m.name if m.role == "tool" else None,
    )


def generation_options(body: ChatCompletionRequest) -> dict[str, Any]:
    """The tool, format and reasoning fields of a chat request, for the GenerationRequest."""
    return {
        "tools": body.tools,
        "tool_choice": body.tool_choice,
        "parallel_tool_calls": body.parallel_tool_calls,
        "response_format": body.response_format,
        "chat_template_kwargs": body.chat_template_kwargs,
        "reasoning_effort": body.reasoning_effort,
    }


class Collected:
    """Reasoning and tool-call deltas of one answer (its text is the caller's)."""

    def __init__(self) -> None:
        self.reasoning: list[str] = []
        self.deltas: list[ToolCallDelta] = []

    def add(self, chunk: Chunk) -> None:
        """Keep what ``chunk`` adds besides text."""
        if chunk.reasoning:
            self.reasoning.append(chunk.reasoning)
        if chunk.tool_calls:
            self.deltas.extend(chunk.tool_calls)


def message_out(text: str, extra: Collected) -> ChatMessageOut:
    """The whole answer: content null when the model only called tools."""
    calls = merge_tool_call_deltas(extra.deltas)
    reasoning = "".join(extra.reasoning)
    return ChatMessageOut(
        content=None if calls and not text.strip() else text,
        tool_calls=calls or None,
        reasoning_content=reasoning or None,
    )


def chat_delta(chunk: Chunk) -> dict[str, Any] | None:
    """OpenAI's ``delta`` for one chunk (None when it carries nothing to send)."""
    delta: dict[str, Any] = {}
    if chunk.text:
        delta["content"] = chunk.text
    if chunk.reasoning:
        delta["reasoning_content"] = chunk.reasoning
    if chunk.tool_calls:
        delta["tool_calls"] = [d.model_dump(exclude_none=True) for d in chunk.tool_calls]
    return delta or None
