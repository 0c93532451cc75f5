"""A small tool-use suite (bundled): 11 requests that a model answers with function calls.

Written for llmpick (``llmpick/data/tools.jsonl``, no outside source): single
calls with ``tool_choice`` auto, required and a named function, a request in
Chinese (a customer-service lookup), two parallel-call rows, two rows where the
right answer is no call, and a multi-turn row where the tool has answered and
the model must make the next call. Each row carries OpenAI's ``tools`` and
``tool_choice``; ``expected`` holds the calls, ``reference`` the raw text of a
perfect answer, so ``-m column:reference`` must score 1 on every row.
Scored with ``tool_call`` (parallel calls in any order).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from llmpick.evaluate.scorers.base import ScorerSpec

__all__ = ["DEFAULT_SCORERS", "load"]

DEFAULT_SCORERS = [ScorerSpec(name="tool_call", args={"ignore_order": True})]


def load() -> list[dict[str, Any]]:
    """Return the suite's rows."""
    text = resources.files("llmpick.data").joinpath("tools.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
