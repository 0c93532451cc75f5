"""How a local model is told about tools, and how its text is read back as calls and reasoning.

The format is Hermes/Qwen's: a call is ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
a result goes back as ``<tool_response>...</tool_response>``, reasoning sits in
``<think>...</think>``. A GGUF chat template that has this format itself
(Qwen2.5/Qwen3, Hermes: it renders ``tools`` and names ``<tool_call>``) gets the
tools, the calls and the ``tool`` messages as they are; any other template gets
the generic form: a system message listing the tools (:data:`GENERIC_TOOL_PROMPT`),
calls written into the assistant's text, results as user messages.

:class:`OutputSplitter` reads a stream of text pieces into answer text, reasoning
and whole tool calls; :func:`join_output` / :func:`split_output` are the same
mapping for a stored output (the store keeps the raw text, scorers read the answer).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from llmpick.backends.tools import FunctionCall, ToolCall, ToolChoice, ToolDef

__all__ = [
    "CALL_CLOSE",
    "CALL_OPEN",
    "GENERIC_TOOL_PROMPT",
    "THINK_CLOSE",
    "THINK_OPEN",
    "OutputSplitter",
    "Piece",
    "SplitOutput",
    "generic_messages",
    "join_output",
    "native_messages",
    "split_output",
    "template_has_tool_format",
]

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

#: The system message of the generic format (Hermes's wording, trimmed).
GENERIC_TOOL_PROMPT = (
    "You may call one or more functions to assist with the user query. The functions, "
    "with their arguments as JSON Schema, are within <tools></tools>:\n<tools>\n{tools}\n"
    "</tools>\n\nTo call a function, answer with a JSON object with the function name and "
    "its arguments within <tool_call></tool_call> tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>\n'
    "Function results come back within <tool_response></tool_response> tags.{choice}"
)


def template_has_tool_format(template: str | None) -> bool:
    """The chat template renders ``tools`` itself, in the ``<tool_call>`` format."""
    return template is not None and "tools" in template and CALL_OPEN in template


def _choice_line(choice: ToolChoice | None) -> str:
    if choice == "required":
        return "\nYou must call at least one function."
    if choice is not None and not isinstance(choice, str):
        return f"\nYou must call the function {choice.function.name}."
    return ""


def _call_text(call: ToolCall) -> str:
    try:
        arguments: Any = call.function.parsed_arguments()
    except ValueError:
        arguments = call.function.arguments
    doc = {"name": call.function.name, "arguments": arguments}
    return f"{CALL_OPEN}\n{json.dumps(doc, ensure_ascii=False)}\n{CALL_CLOSE}"


def generic_messages(
    messages: list[dict[str, Any]], tools: list[ToolDef], choice: ToolChoice | None
) -> list[dict[str, Any]]:
    """``messages`` in the generic format, for a template that knows no tools.

    The tool list joins the system message (or becomes one); an assistant's calls
    become ``<tool_call>`` text; a ``tool`` message becomes a user message in
    ``<tool_response>`` tags (templates that alternate user/assistant accept it).
    """
    listing = "\n".join(json.dumps(t.model_dump(exclude_none=True)) for t in tools)
    prompt = GENERIC_TOOL_PROMPT.format(tools=listing, choice=_choice_line(choice))
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "tool":
            body = f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + body
            else:
                out.append({"role": "user", "content": body, "_tool": True})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            calls = [ToolCall.model_validate(c) for c in m["tool_calls"]]
            text = "\n".join([m.get("content") or "", *(_call_text(c) for c in calls)]).strip()
            out.append({"role": "assistant", "content": text})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    for m in out:
        m.pop("_tool", None)
    if not tools:
        return out
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{prompt}"}
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def native_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` for a template with the tool format: arguments as objects, as HF's are."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                call = ToolCall.model_validate(c)
                try:
                    arguments: Any = call.function.parsed_arguments()
                except ValueError:
                    arguments = call.function.arguments
                calls.append(
                    {"id": call.id, "type": "function",
                     "function": {"name": call.function.name, "arguments": arguments}}
                )  # fmt: skip
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out


# ---------------------------------------------------------------- reading output


def new_call_id() -> str:
    """An id for a call a local model made (OpenAI's ``call_`` + 24 characters)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_call(body: str) -> ToolCall | None:
    """The call in the JSON between ``<tool_call>`` tags, or None when it is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        return None
    arguments = doc.get("arguments", doc.get("parameters", {}))
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return ToolCall(id=new_call_id(), function=FunctionCall(name=doc["name"], arguments=text))


@dataclass
class Piece:
    """What one step of the splitter releases."""

    text: str = ""
    reasoning: str = ""
    calls: list[ToolCall] = field(default_factory=list)


class OutputSplitter:
    """Splits streamed model text into answer, ``<think>`` reasoning and ``<tool_call>`` calls.

    ``thinking``: the prompt already opened a ``<think>`` block (R1 distills'
    templates do), so the output starts inside it. ``tools``: read calls; they
    count only before any answer text (the grammar puts them there), so a call
    quoted inside prose stays prose. Text that could be the start of a tag is held
    back until it is known not to be one.
    """

    def __init__(self, *, thinking: bool = False, tools: bool = False) -> None:
        self.state = "think" if thinking else "start"
        self.tools = tools
        self._held = ""
        self._call = ""
        self.answered = False  # answer text other than whitespace was released

    def feed(self, text: str) -> Piece:
        """Add a piece of model text; return what can be released now."""
        self._held += text
        piece = Piece()
        while self._step(piece):
            pass
        return piece

    def close(self) -> Piece:
        """The end of the output: release everything held (an unclosed call as text)."""
        piece = Piece()
        rest, self._held = self._held, ""
        if self.state == "think":
            piece.reasoning += rest
        elif self.state == "call":
            piece.text += CALL_OPEN + self._call + rest
        else:
            piece.text += rest
        return piece

    def _step(self, piece: Piece) -> bool:
        held = self._held
        if self.state == "start":
            stripped = held.lstrip()
            if stripped.startswith(THINK_OPEN):
                self._held = stripped[len(THINK_OPEN) :]
                self.state = "think"
                return True
            if stripped and not THINK_OPEN.startswith(stripped):
                self.state = "answer"
                return True
            return False
        if self.state == "think":
            return self._until(THINK_CLOSE, piece, "reasoning", then="after_think")
        if self.state == "after_think":
            self._held = held.lstrip()
            if self._held or held:
                self.state = "answer"
            return bool(self._held)
        if self.state == "call":
            end = held.find(CALL_CLOSE)
            if end < 0:
                return False
            call = parse_call(self._call + held[:end])
            if call is None:
                piece.text += CALL_OPEN + self._call + held[: end + len(CALL_CLOSE)]
                self.answered = True
            else:
                piece.calls.append(call)
            self._call = ""
            self._held = held[end + len(CALL_CLOSE) :]
            self.state = "answer"
            return True
        return self._answer(piece)

    def _answer(self, piece: Piece) -> bool:
        held = self._held
        if not self.tools or self.answered:
            piece.text += held
            self._held = ""
            return False
        stripped = held.lstrip()
        if stripped.startswith(CALL_OPEN):
            self._held = stripped[len(CALL_OPEN) :]
            self._call = ""
            self.state = "call"
            return True
        if not stripped or CALL_OPEN.startswith(stripped):
            return False  # whitespace or the start of a tag: wait
        piece.text += held
        self._held = ""
        self.answered = True
        return False

    def _until(self, tag: str, piece: Piece, into: str, then: str) -> bool:
        held = self._held
        end = held.find(tag)
        if end >= 0:
            setattr(piece, into, getattr(piece, into) + held[:end])
            self._held = held[end + len(tag) :]
            self.state = then
            return True
        keep = _partial_suffix(held, tag)
        setattr(piece, into, getattr(piece, into) + held[: len(held) - keep])
        self._held = held[len(held) - keep :]
        return False


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


@dataclass
class SplitOutput:
    """A stored output read back: the answer, the reasoning and the calls."""

    content: str
    reasoning: str
    tool_calls: list[ToolCall]


def split_output(raw: str) -> SplitOutput:
    """Read a raw output (as :func:`join_output` writes it, or a model's text) back."""
    splitter = OutputSplitter(tools=CALL_OPEN in raw)
    first, last = splitter.feed(raw), splitter.close()
    return SplitOutput(
        content=(first.text + last.text).strip() if first.calls else first.text + last.text,
        reasoning=first.reasoning + last.reasoning,
        tool_calls=first.calls + last.calls,
    )


def join_output(content: str, reasoning: str, calls: list[ToolCall]) -> str:
    """One text holding the answer, its reasoning and its calls (``content`` when neither)."""
    parts = [f"{THINK_OPEN}{reasoning}{THINK_CLOSE}"] if reasoning else []
    parts += [_call_text(c) for c in calls]
    if content:
        parts.append(content)
    return "\n".join(parts) if (reasoning or calls) else content
