"""Tools, JSON output and reasoning for the ``llamacpp`` backend: prompt, grammar, reading back.

For one request this decides what the chat template is given (the tools and
the ``tool`` messages as they are for a template with its own tool format, the
generic format of :mod:`llmpick.backends.tool_format` otherwise), which grammar
constrains decoding (:mod:`llmpick.backends.grammar`), and how the streamed text
is split into answer, reasoning and tool calls (:func:`split_chunks`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from llmpick.backends.base import Chunk, GenerationRequest
from llmpick.backends.grammar import Grammar, json_grammar, tool_call_grammar, unenforced_keywords
from llmpick.backends.tool_format import (
    THINK_OPEN,
    OutputSplitter,
    generic_messages,
    native_messages,
    template_has_tool_format,
)
from llmpick.backends.tools import ToolCallDelta
from llmpick.errors import UnsupportedRequestError

__all__ = [
    "Constraints",
    "check_constraints",
    "constraints_for",
    "split_chunks",
    "template_messages",
    "thinking_mode",
]


def template_messages(
    request: GenerationRequest, template: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and extra variables the chat template renders for ``request``."""
    messages = [m.model_dump() for m in request.messages]
    kwargs: dict[str, Any] = dict(request.chat_template_kwargs or {})
    if request.reasoning_effort is not None:
        kwargs.setdefault("reasoning_effort", request.reasoning_effort)
    history = any(m.role == "tool" or m.tool_calls for m in request.messages)
    if not (request.tools or history):
        return messages, kwargs
    tools = request.tools or [] if request.wants_tools() else []
    if template_has_tool_format(template):
        if tools:
            kwargs["tools"] = [t.model_dump(exclude_none=True) for t in tools]
        return native_messages(messages), kwargs
    return generic_messages(messages, tools, request.tool_choice), kwargs


def thinking_mode(template: str | None, prompt: str, kwargs: dict[str, Any]) -> str | None:
    """``open``: the prompt opened a ``<think>`` block; ``optional``: the model may write one."""
    if prompt.rstrip().endswith(THINK_OPEN):
        return "open"
    if template and THINK_OPEN in template and kwargs.get("enable_thinking", True) is not False:
        return "optional"
    return None


def check_constraints(request: GenerationRequest) -> None:
    """Refuse what the grammar could not enforce: a strict schema's unknown keywords, bad names."""
    choice = request.tool_choice
    names = [t.function.name for t in request.tools or []]
    if choice is not None and not isinstance(choice, str) and choice.function.name not in names:
        raise UnsupportedRequestError(
            f"tool_choice names '{choice.function.name}', which is not among the tools",
            f"name one of: {', '.join(names) or '(no tools given)'}",
            param="tool_choice",
        )
    if choice == "required" and not names:
        raise UnsupportedRequestError(
            "tool_choice is 'required' but no tools were given", "send tools", param="tools"
        )
    strict: list[tuple[str, dict[str, Any]]] = []
    if request.wants_tools():
        strict += [
            (f"tools[{t.function.name}]", t.function.arguments_schema())
            for t in request.tools or []
            if t.function.strict
        ]
    fmt = request.response_format
    if fmt is not None and fmt.json_schema is not None and fmt.json_schema.strict:
        strict.append(("response_format", fmt.schema_or_none() or {}))
    for where, schema in strict:
        unenforced = unenforced_keywords(schema)
        if unenforced:
            raise UnsupportedRequestError(
                f"{where}: strict schema uses what local decoding cannot enforce: "
                + "; ".join(unenforced),
                "drop those keywords or send strict: false (then they are not enforced)",
                param="tools" if where.startswith("tools") else "response_format",
            )


@dataclass
class Constraints:
    """The grammar of one request and how to read its output."""

    grammar: Grammar | None
    thinking: str | None
    tools: bool

    def splitter(self) -> OutputSplitter | None:
        """A splitter when there is reasoning or calls to read; None for plain text."""
        if self.thinking is None and not self.tools:
            return None
        return OutputSplitter(thinking=self.thinking == "open", tools=self.tools)


def constraints_for(request: GenerationRequest, thinking: str | None) -> Constraints:
    """The grammar for ``request`` (tools, then response_format), if any."""
    fmt = request.response_format
    schema = fmt.schema_or_none() if fmt is not None else None
    if request.wants_tools():
        grammar = tool_call_grammar(
            request.tools or [],
            request.tool_choice,
            parallel=request.parallel_tool_calls is True,
            answer_schema=schema,
            thinking=thinking,
        )
        return Constraints(grammar, thinking, tools=True)
    if schema is not None:
        return Constraints(json_grammar(schema, thinking), thinking, tools=False)
    return Constraints(None, thinking, tools=False)


async def split_chunks(
    chunks: AsyncIterator[Chunk], splitter: OutputSplitter
) -> AsyncIterator[Chunk]:
    """The chunks with their text split into answer, reasoning and whole tool calls.

    The last chunk says ``finish_reason: tool_calls`` when calls were made and the
    model stopped on its own.
    """
    n_calls = 0
    async for chunk in chunks:
        piece = splitter.feed(chunk.text)
        if chunk.final:
            last = splitter.close()
            piece.text += last.text
            piece.reasoning += last.reasoning
            piece.calls += last.calls
        deltas = [ToolCallDelta.whole(n_calls + i, c) for i, c in enumerate(piece.calls)]
        n_calls += len(deltas)
        finish = chunk.finish_reason
        if chunk.final and n_calls and finish == "stop":
            finish = "tool_calls"
        yield chunk.model_copy(
            update={
                "text": piece.text,
                "reasoning": piece.reasoning,
                "tool_calls": deltas or None,
                "finish_reason": finish,
                "time_s": chunk.time_s if not chunk.final else time.perf_counter(),
            }
        )
