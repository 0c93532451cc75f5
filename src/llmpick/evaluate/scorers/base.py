"""The Scorer seam: a callable from a finished cell to a Score.

Scorers are small factories registered by name (entry points in the
``llmpick.scorers`` group, like third-party ones): ``factory(**args)`` returns
a callable ``scorer(cell) -> Score`` (or an awaitable of one). The name and
arguments travel as a :class:`ScorerSpec`, stored with the run, so scores can
be recomputed later (``llmpick rescore``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmpick.backends.base import Generation, GenerationRequest
from llmpick.backends.tools import ToolCall

__all__ = ["Cell", "JudgeFn", "Score", "Scorer", "ScorerSpec"]


class Cell(BaseModel):
    """A finished generation for one (model, row, repeat), as a scorer sees it.

    ``output`` is the answer: the model's reasoning (``<think>``) and its tool
    calls are apart, in ``reasoning`` and ``tool_calls`` (the store keeps the raw text).
    """

    model_config = ConfigDict(extra="forbid")

    row_id: str
    row: dict[str, Any]
    model: str
    repeat: int = 0
    prompt: str
    output: str
    expected: str | None = None
    latency_s: float | None = None
    time_to_first_token_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning: str = ""
    tool_calls: list[ToolCall] = []


class Score(BaseModel):
    """A score: ``value`` in [0, 1] (None when only a label applies)."""

    value: float | None = Field(default=None, ge=0.0, le=1.0)
    label: str | None = None
    explanation: str = ""


class ScorerSpec(BaseModel):
    """A scorer's registered name and arguments, as stored with a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    args: dict[str, Any] = {}


Scorer = Callable[[Cell], "Score | Awaitable[Score]"]

#: How judge scorers reach their model: the runner passes a (cached) function
#: that generates for a request on the judge backend.
JudgeFn = Callable[[GenerationRequest], Awaitable[Generation]]
