"""The ``code_exec`` scorer: run the output's Python with the row's tests, in the sandbox.

Program (the HumanEval protocol, Chen et al. 2021): the first fenced Python
block of the output (else the whole text); if the row names an entry point the
code does not define, the row's prompt code is put first (prompt + completion);
then the row's test code. A test that defines ``check(candidate)`` without
calling it gets ``check(ENTRY_POINT)`` appended. Passed = exit status 0 after a
line printed at the very end (so ``sys.exit(0)`` in the answer cannot pass). See
:mod:`llmpick.evaluate.sandbox` for what the sandbox guarantees.
"""

from __future__ import annotations

import re
import secrets

from llmpick.errors import ScorerError
from llmpick.evaluate.sandbox import run_python
from llmpick.evaluate.scorers.base import Cell, Score, Scorer

__all__ = ["build_program", "code_exec", "extract_code"]

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}


def extract_code(text: str) -> str:
    """Return the first fenced Python block (else an untagged one), else the text."""
    blocks = _FENCE.findall(text)
    for tag, body in blocks:
        if tag.lower() in _PYTHON_TAGS:
            return str(body)
    for tag, body in blocks:
        if not tag:
            return str(body)
    return text


def build_program(code: str, test: str, entry_point: str | None, prefix: str | None) -> str:
    """Assemble the program the sandbox runs: [prefix +] code + test [+ check call]."""
    if entry_point and prefix and not _defines(code, entry_point):
        code = prefix + code
    program = code.rstrip() + "\n\n" + test.rstrip() + "\n"
    if (
        entry_point
        and re.search(r"^def check\(", test, re.MULTILINE)
        and not re.search(r"^check\(", test, re.MULTILINE)
    ):
        program += f"\n\ncheck({entry_point})\n"
    return program


def _defines(code: str, name: str) -> bool:
    return (
        re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    )


def code_exec(
    test_column: str = "test",
    entry_point_column: str = "entry_point",
    prefix_column: str = "code_prompt",
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
) -> Scorer:
    """Run the output's Python against the row's ``test_column`` in the sandbox; 1 = passed.

    The prefix falls back to a ``prompt`` column when ``prefix_column`` is absent.
    """
    if float(timeout_s) <= 0 or int(memory_mb) < 64:
        raise ScorerError("code_exec needs timeout_s > 0 and memory_mb >= 64")

    def score(cell: Cell) -> Score:
        test = cell.row.get(test_column)
        if not test:
            raise ScorerError(
                f"row {cell.row_id} has no '{test_column}' column for code_exec",
                f"columns: {', '.join(sorted(cell.row)) or 'none'}; "
                "name another with --scorer code_exec:test_column=NAME",
            )
        entry_point = cell.row.get(entry_point_column) or None
        prefix = cell.row.get(prefix_column)
        if prefix is None and prefix_column == "code_prompt":
            prefix = cell.row.get("prompt")
        program = build_program(
            extract_code(cell.output),
            str(test),
            str(entry_point) if entry_point else None,
            str(prefix) if prefix else None,
        )
        # exit status 0 alone would pass code that calls sys.exit(0) before the tests run
        sentinel = f"llmpick-tests-finished-{secrets.token_hex(8)}"
        program += f"\nprint({sentinel!r})\n"
        result = run_python(program, timeout_s=float(timeout_s), memory_mb=int(memory_mb))
        passed = result.passed and sentinel in result.stdout
        reason = result.reason
        if result.passed and not passed:
            reason = "the program exited before its tests finished"
        isolation = "network isolated" if result.network_isolated else "network NOT isolated"
        return Score(
            value=1.0 if passed else 0.0,
            label="pass" if passed else ("timeout" if result.timed_out else "fail"),
            explanation=f"{reason} ({result.duration_s:.2f} s, {isolation})",
        )

    return score
