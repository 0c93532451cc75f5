"""Reference-based scorers over the output text, and metadata thresholds.

``exact``, ``contains``, ``regex``, ``choice`` (A/B/C/D), ``numeric``
(GSM8K-style final-answer extraction), ``length`` and ``latency``. Each is a
factory: ``exact(ignore_case=False)`` returns a callable ``scorer(cell) -> Score``.
The reference is ``cell.expected`` unless ``column=`` names a row column.
"""

from __future__ import annotations

import math
import re
import string
from typing import Any

from llmpick.errors import ScorerError
from llmpick.evaluate.scorers.base import Cell, Score, Scorer

__all__ = [
    "choice",
    "contains",
    "exact",
    "extract_choice",
    "extract_number",
    "latency",
    "length",
    "numeric",
    "regex",
]

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _reference(cell: Cell, column: str | None) -> str | None:
    if column is None:
        return cell.expected
    if column not in cell.row:
        raise ScorerError(
            f"row {cell.row_id} has no column '{column}'",
            f"columns: {', '.join(sorted(cell.row)) or 'none'}",
        )
    value = cell.row[column]
    return None if value is None else str(value)


def _no_reference(cell: Cell, column: str | None) -> Score:
    where = f"column '{column}'" if column else "an expected answer"
    return Score(value=None, label="no-reference", explanation=f"row {cell.row_id} has no {where}")


def _verdict(ok: bool, explanation: str) -> Score:
    return Score(value=1.0 if ok else 0.0, label="pass" if ok else "fail", explanation=explanation)


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _normalise(text: str, ignore_case: bool, whitespace: bool, punctuation: bool) -> str:
    if punctuation:
        text = text.translate(_PUNCTUATION)
    if whitespace:
        text = " ".join(text.split())
    if ignore_case:
        text = text.casefold()
    return text


def exact(
    column: str | None = None,
    ignore_case: bool = True,
    normalize_whitespace: bool = True,
    strip_punctuation: bool = False,
) -> Scorer:
    """1 when the output equals the reference after normalisation, else 0."""

    def score(cell: Cell) -> Score:
        reference = _reference(cell, column)
        if reference is None:
            return _no_reference(cell, column)
        args = (ignore_case, normalize_whitespace, strip_punctuation)
        ok = _normalise(cell.output, *args) == _normalise(reference, *args)
        return _verdict(ok, f"expected {_short(reference)!r}, got {_short(cell.output)!r}")

    return score


def contains(
    text: str | None = None, column: str | None = None, ignore_case: bool = True
) -> Scorer:
    """1 when the output contains ``text`` (or the reference), else 0."""

    def score(cell: Cell) -> Score:
        needle = str(text) if text is not None else _reference(cell, column)
        if needle is None:
            return _no_reference(cell, column)
        haystack = " ".join(cell.output.split())
        wanted = " ".join(needle.split())
        if ignore_case:
            haystack, wanted = haystack.casefold(), wanted.casefold()
        ok = wanted in haystack
        return _verdict(ok, f"{_short(needle)!r} {'found' if ok else 'not found'} in the output")

    return score


def regex(
    pattern: str | None = None,
    column: str | None = None,
    ignore_case: bool = False,
    full_match: bool = False,
) -> Scorer:
    """1 when the pattern (or the row's ``column``) matches the output, else 0."""
    if pattern is None and column is None:
        raise ScorerError("regex needs a pattern", "e.g. --scorer 'regex:pattern=^Yes'")
    flags = re.IGNORECASE if ignore_case else 0
    fixed = _compile(str(pattern), flags) if pattern is not None else None

    def score(cell: Cell) -> Score:
        compiled = fixed
        if compiled is None:
            source = _reference(cell, column)
            if source is None:
                return _no_reference(cell, column)
            compiled = _compile(source, flags)
        text = cell.output.strip() if full_match else cell.output
        found = compiled.fullmatch(text) if full_match else compiled.search(text)
        return _verdict(
            found is not None,
            f"/{_short(compiled.pattern)}/ "
            + (f"matched {_short(found.group(0))!r}" if found else "did not match"),
        )

    return score


def _compile(pattern: str, flags: int) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ScorerError(f"invalid regular expression {pattern!r}: {exc}") from exc


def extract_choice(text: str, choices: str = "ABCD") -> str | None:
    """Return the answer letter in ``text``, or None when none is clear.

    In order: "answer is (B)" / "Answer: B"; a reply that starts with the letter
    ("B", "B.", "(B) …"); a bold letter ("**B**"); the only standalone letter.
    """
    letters = "".join(sorted({c.upper() for c in choices if c.isalpha()}))
    if not letters:
        return None
    cls = f"[{re.escape(letters)}]"
    patterns = [
        rf"(?i:answer|choice|option)\s*(?:is|:|=)?\s*(?i:option\s*)?[\s(\[*]*({cls})(?![A-Za-z])",
        rf"^\W*\(?({cls})\)?(?:[.):\]]|\s*$|\s*\n|\s+[-–—])",
        rf"\*\*\(?({cls})\)?[.:]?\*\*",
        rf"\(({cls})\)",
    ]
    stripped = text.strip()
    for pattern in patterns:
        found = re.findall(pattern, stripped)
        if found:
            return str(found[-1] if pattern.startswith("(?i:answer") else found[0]).upper()
    # a capital followed by a lower-case word is an article ("A cat"), unless a verb
    standalone = set(
        re.findall(
            rf"(?<![A-Za-z'])({cls})(?![A-Za-z'])(?!\s+(?!(?:is|was|would|seems|looks)\b)[a-z])",
            stripped,
        )
    )
    return standalone.pop() if len(standalone) == 1 else None


def _expected_choice(reference: str, choices: str) -> str | None:
    value = reference.strip()
    letters = [c.upper() for c in choices if c.isalpha()]
    if value.isdigit() and int(value) < len(letters):
        return letters[int(value)]  # datasets such as MMLU store the 0-based index
    return extract_choice(value, choices)


def choice(choices: str = "ABCD", column: str | None = None) -> Scorer:
    """1 when the answer letter in the output matches the reference letter (or 0-based index)."""
    choices = str(choices)

    def score(cell: Cell) -> Score:
        reference = _reference(cell, column)
        if reference is None:
            return _no_reference(cell, column)
        wanted = _expected_choice(reference, choices)
        if wanted is None:
            return Score(
                value=None,
                label="invalid-reference",
                explanation=f"expected {reference!r} is not one of {choices}",
            )
        got = extract_choice(cell.output, choices)
        if got is None:
            return _verdict(False, f"no answer letter found; expected {wanted}")
        return _verdict(got == wanted, f"answered {got}, expected {wanted}")

    return score


_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"


def _to_float(text: str) -> float:
    return float(text.replace(",", ""))


def extract_number(text: str) -> float | None:
    r"""Return the final numeric answer in ``text`` (GSM8K style), or None.

    In order: the last "#### N"; the last ``\boxed{N}``; the last "answer is N" /
    "Answer: N"; else the last number. Commas, currency signs and a trailing
    period are ignored.
    """
    text = text.replace("\u2212", "-").replace("$", "")
    for pattern in (
        rf"####\s*({_NUMBER})",
        rf"\\boxed\{{\s*({_NUMBER})\s*\}}",
        rf"(?i:answer)\s*(?:is|:|=)?\s*[:*\s]*({_NUMBER})",
    ):
        found = re.findall(pattern, text)
        if found:
            return _to_float(found[-1])
    numbers = re.findall(_NUMBER, text)
    return _to_float(numbers[-1]) if numbers else None


def numeric(column: str | None = None, abs_tol: float = 1e-6, rel_tol: float = 0.0) -> Scorer:
    """1 when the output's final number equals the reference's, within tolerance."""
    if abs_tol < 0 or rel_tol < 0:
        raise ScorerError("numeric tolerances must be >= 0")

    def score(cell: Cell) -> Score:
        reference = _reference(cell, column)
        if reference is None:
            return _no_reference(cell, column)
        wanted = extract_number(reference)
        if wanted is None:
            return Score(
                value=None,
                label="invalid-reference",
                explanation=f"expected {_short(reference)!r} holds no number",
            )
        got = extract_number(cell.output)
        if got is None:
            return _verdict(False, f"no number in the output; expected {wanted:g}")
        ok = math.isclose(got, wanted, rel_tol=rel_tol, abs_tol=abs_tol)
        return _verdict(ok, f"answered {got:g}, expected {wanted:g}")

    return score


def length(
    min_chars: int | None = None,
    max_chars: int | None = None,
    min_tokens: int | None = None,
    max_tokens: int | None = None,
) -> Scorer:
    """1 when the output's length (characters, or completion tokens) is within bounds."""
    bounds = {"min_chars": min_chars, "max_chars": max_chars}
    bounds |= {"min_tokens": min_tokens, "max_tokens": max_tokens}
    if all(v is None for v in bounds.values()):
        raise ScorerError(
            "length needs a bound", "args: min_chars, max_chars, min_tokens, max_tokens"
        )
    wants_tokens = min_tokens is not None or max_tokens is not None

    def score(cell: Cell) -> Score:
        measured: dict[str, float] = {"chars": len(cell.output)}
        if wants_tokens:
            if cell.completion_tokens is None:
                return Score(value=None, label="unmeasured", explanation="no token count")
            measured["tokens"] = cell.completion_tokens
        problems = _outside(measured, bounds)
        return _verdict(not problems, "; ".join(problems) or _describe(measured))

    return score


def latency(max_s: float | None = None, max_ttft_s: float | None = None) -> Scorer:
    """1 when latency (and/or time to first token) is at most the threshold, seconds."""
    if max_s is None and max_ttft_s is None:
        raise ScorerError("latency needs a threshold", "args: max_s, max_ttft_s")

    def score(cell: Cell) -> Score:
        measured: dict[str, float] = {}
        for name, limit, value in (
            ("s", max_s, cell.latency_s),
            ("ttft_s", max_ttft_s, cell.time_to_first_token_s),
        ):
            if limit is None:
                continue
            if value is None:
                return Score(value=None, label="unmeasured", explanation=f"no {name} measured")
            measured[name] = value
        problems = _outside(measured, {"max_s": max_s, "max_ttft_s": max_ttft_s})
        return _verdict(not problems, "; ".join(problems) or _describe(measured))

    return score


def _outside(measured: dict[str, float], bounds: dict[str, Any]) -> list[str]:
    problems = []
    for key, bound in bounds.items():
        if bound is None:
            continue
        kind, unit = key.split("_", 1)
        value = measured.get(unit)
        if value is None:
            continue
        if kind == "min" and value < bound:
            problems.append(f"{unit} {value:g} < {bound:g}")
        if kind == "max" and value > bound:
            problems.append(f"{unit} {value:g} > {bound:g}")
    return problems


def _describe(measured: dict[str, float]) -> str:
    return ", ".join(f"{unit} {value:g}" for unit, value in measured.items())
