"""Request-size rules of the gateway: body size, messages, stop strings, tokens, time.

Every violation is a :class:`RequestRejectedError` whose message says what is
allowed, so a client knows what to change. Prompts are data: nothing here strips or
rewrites text. Text with control characters other than whitespace (NUL, ESC, DEL,
C1 controls…) is refused with 400 rather than cleaned; escaping belongs where text
is displayed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmpick.bodylimit import BodySizeLimit
from llmpick.errors import RequestRejectedError

__all__ = ["BodySizeLimit", "RequestRules", "check_text", "total_time_limit"]

# C0 and C1 controls that are not whitespace (\t \n \v \f \r, \x1c-\x1f and \x85 are)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")


class RequestRules(BaseModel):
    """Limits on one request (``serve.limits`` in llmpick.yaml; ``None`` = no limit)."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(1_000_000, ge=1)
    max_input_tokens: int | None = Field(None, ge=1)
    max_output_tokens: int | None = Field(None, ge=1)
    max_messages: int = Field(256, ge=1)
    max_stop: int = Field(4, ge=0)
    max_stop_chars: int = Field(64, ge=1)
    total_timeout_s: float | None = Field(300.0, gt=0)

    def check_messages(self, messages: list[dict[str, Any]]) -> None:
        """Count of messages and control characters in their text."""
        if len(messages) > self.max_messages:
            raise _bad(
                f"{len(messages)} messages sent, at most {self.max_messages} are allowed:"
                " send fewer messages",
                "too_many_messages",
                "messages",
            )
        for i, message in enumerate(messages):
            for where, text in _texts(message.get("content")):
                check_text(text, f"messages[{i}].content{where}")

    def check_prompt(self, prompt: str | list[str]) -> None:
        """Control characters in a plain completion prompt."""
        for i, text in enumerate([prompt] if isinstance(prompt, str) else prompt):
            check_text(text, "prompt" if isinstance(prompt, str) else f"prompt[{i}]")

    def check_stop(self, stop: str | list[str] | None) -> None:
        """Number and length of stop strings."""
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > self.max_stop:
            raise _bad(
                f"{len(stops)} stop strings sent, at most {self.max_stop} are allowed",
                "too_many_stop_strings",
                "stop",
            )
        for i, text in enumerate(stops):
            if len(text) > self.max_stop_chars:
                raise _bad(
                    f"stop[{i}] has {len(text)} characters, at most {self.max_stop_chars}"
                    " are allowed",
                    "stop_string_too_long",
                    "stop",
                )
            check_text(text, f"stop[{i}]")

    def check_tokens(self, prompt_tokens: int, max_tokens: int | None) -> None:
        """The prompt's token count and the ``max_tokens`` asked for, against the caps."""
        if self.max_input_tokens is not None and prompt_tokens > self.max_input_tokens:
            raise _bad(
                f"the prompt has {prompt_tokens} tokens, at most {self.max_input_tokens}"
                " are allowed per request: shorten it",
                "input_too_long",
                "messages",
            )
        if (
            self.max_output_tokens is not None
            and max_tokens is not None
            and max_tokens > self.max_output_tokens
        ):
            raise _bad(
                f"max_tokens is {max_tokens}, at most {self.max_output_tokens} are allowed:"
                f" ask for {self.max_output_tokens} or fewer",
                "max_tokens_too_large",
                "max_tokens",
            )

    def output_tokens(self, max_tokens: int | None) -> int | None:
        """The ``max_tokens`` to use: the client's, or the cap when the client gave none."""
        return max_tokens if max_tokens is not None else self.max_output_tokens


def check_text(text: str, param: str) -> None:
    """400 when ``text`` holds a control character other than whitespace."""
    match = _CONTROL.search(text)
    if match:
        raise _bad(
            f"{param} contains the control character U+{ord(match.group()):04X} at offset"
            f" {match.start()}; remove it (only tab, newline and other whitespace controls"
            " are accepted)",
            "invalid_characters",
            param.split("[", 1)[0].split(".", 1)[0],
        )


def _texts(content: Any) -> Iterator[tuple[str, str]]:
    if isinstance(content, str):
        yield "", content
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield f"[{j}].text", part["text"]


def _bad(message: str, code: str, param: str | None) -> RequestRejectedError:
    return RequestRejectedError(400, message, code=code, param=param)


@asynccontextmanager
async def total_time_limit(seconds: float | None) -> AsyncIterator[None]:
    """Raise a 504 :class:`RequestRejectedError` when the block runs past ``seconds``."""
    if seconds is None:
        yield
        return
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise RequestRejectedError(
            504,
            f"the request took longer than the gateway's limit of {seconds:g} s:"
            " ask for fewer tokens (max_tokens) or retry later",
            code="timeout",
        ) from None
