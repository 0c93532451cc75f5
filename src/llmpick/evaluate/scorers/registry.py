"""Scorer specs: parse ``NAME[:ARG=VAL,…]``, build a scorer, pick defaults for a dataset.

Names resolve through ``context.scorers`` (entry points in group
``llmpick.scorers``, the built-ins included), or as ``module:function`` for a
scorer that is not installed as a plugin.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from llmpick.errors import LlmpickError, ScorerError
from llmpick.evaluate.scorers.base import JudgeFn, Scorer, ScorerSpec
from llmpick.evaluate.scorers.text import extract_choice, extract_number

__all__ = ["build_scorer", "default_scorers", "parse_scorer_spec"]

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE_PATH = re.compile(rf"^{_IDENTIFIER}(?:\.{_IDENTIFIER})*:{_IDENTIFIER}$")
# an argument starts at a comma followed by NAME= (so values may hold commas)
_ARG_SPLIT = re.compile(rf",\s*(?={_IDENTIFIER}\s*=)")
_EXPECTED_COLUMNS = ("expected", "answer", "reference", "target")


_ARG_NAME = re.compile(rf"\s*{_IDENTIFIER}\s*=\s*")


def _split_args(rest: str) -> list[str]:
    """``ARG=VAL,…`` into ``ARG=VAL`` parts; a value in JSON quotes may hold anything.

    Unquoted values end at a comma followed by ``NAME=``; a value that starts
    with ``"`` ends where its JSON string does (``rubric="Correct, brief=short?"``).
    """
    parts: list[str] = []
    pos = 0
    while pos < len(rest):
        name = _ARG_NAME.match(rest, pos)
        end = None
        if name is not None and rest.startswith('"', name.end()):
            try:
                _value, end = json.JSONDecoder().raw_decode(rest, name.end())
            except ValueError:
                end = None
        if end is not None and (end == len(rest) or rest[end:].lstrip().startswith(",")):
            parts.append(rest[pos:end])
            comma = rest.find(",", end)
            pos = len(rest) if comma < 0 else comma + 1
            continue
        split = _ARG_SPLIT.search(rest, pos)
        parts.append(rest[pos : split.start() if split else len(rest)])
        pos = split.end() if split else len(rest)
    return parts


def _parse_value(text: str) -> Any:
    stripped = text.strip()
    if stripped.lower() in {"true", "false"}:
        return stripped.lower() == "true"
    try:
        return json.loads(stripped)
    except ValueError:
        return stripped


def parse_scorer_spec(text: str) -> ScorerSpec:
    """Parse ``NAME[:ARG=VAL,…]`` (or ``module:function[:ARG=VAL,…]``) into a ScorerSpec.

    Values are JSON when they parse as JSON (``true``, ``3``, ``0.5``,
    ``["a","b"]``), else plain strings: ``regex:pattern=^A,ignore_case=true``.
    """
    text = text.strip()
    name, _, rest = text.partition(":")
    head, _, tail = rest.partition(":")
    if rest and "=" not in head and _MODULE_PATH.match(f"{name}:{head}"):
        name, rest = f"{name}:{head}", tail
    name = name.strip()
    if not name:
        raise ScorerError(f"empty scorer name in {text!r}", "use NAME[:ARG=VAL,...]")
    args: dict[str, Any] = {}
    if rest.strip():
        for part in _split_args(rest.strip()):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or not re.fullmatch(_IDENTIFIER, key):
                raise ScorerError(
                    f"cannot read scorer argument {part!r} in {text!r}",
                    "use NAME:ARG=VALUE,ARG=VALUE (e.g. regex:pattern=^A,ignore_case=true)",
                )
            if key in args:
                raise ScorerError(f"scorer argument '{key}' given twice in {text!r}")
            args[key] = _parse_value(value)
    return ScorerSpec(name=name, args=args)


def _load_factory(context: Any, name: str) -> Callable[..., Any]:
    if ":" in name and _MODULE_PATH.match(name):
        module_name, _, attribute = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ScorerError(
                f"cannot import scorer module '{module_name}': {exc}",
                "check the module is installed and importable (PYTHONPATH)",
            ) from exc
        factory = getattr(module, attribute, None)
        if not callable(factory):
            raise ScorerError(f"module '{module_name}' has no callable '{attribute}'")
        return factory
    factory = context.scorers.get(name)
    if not callable(factory):
        raise ScorerError(f"scorer '{name}' is not callable")
    return factory


def _accepted(signature: inspect.Signature) -> str:
    names = [p for p in signature.parameters if p != "judge"]
    return ", ".join(names) or "none"


def build_scorer(context: Any, spec: ScorerSpec, judge: JudgeFn | None = None) -> Scorer:
    """Build the scorer for ``spec``: look up the factory and call it with the args.

    ``judge`` goes to factories that take a ``judge`` parameter. Unknown names,
    unknown or bad arguments raise ScorerError with the accepted names as hint.
    """
    factory = _load_factory(context, spec.name)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    args = dict(spec.args)
    if "judge" in args:
        raise ScorerError("'judge' is not a scorer argument", "name the judge with --judge MODEL")
    if signature is not None:
        takes_judge = "judge" in signature.parameters
        if takes_judge:
            args["judge"] = judge
        try:
            signature.bind(**args)
        except TypeError as exc:
            raise ScorerError(
                f"bad arguments for scorer '{spec.name}': {exc}",
                f"{spec.name} accepts: {_accepted(signature)}",
            ) from exc
    try:
        scorer = factory(**args)
    except LlmpickError:
        raise
    except (TypeError, ValueError) as exc:
        accepted = _accepted(signature) if signature is not None else "see its documentation"
        raise ScorerError(
            f"bad arguments for scorer '{spec.name}': {exc}", f"{spec.name} accepts: {accepted}"
        ) from exc
    if not callable(scorer):
        raise ScorerError(f"scorer factory '{spec.name}' did not return a callable")
    return scorer


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    text = str(value).strip()
    if "####" in text:
        return extract_number(text) is not None
    return re.fullmatch(r"[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?", text) is not None


def _is_letter(value: Any, choices: str = "ABCD") -> bool:
    text = str(value).strip()
    return len(text) <= 3 and extract_choice(text, choices) is not None and text.upper() == text


def default_scorers(
    columns: Iterable[str],
    rows: Iterable[Mapping[str, Any]] | None = None,
    expected_column: str | None = None,
    has_judge: bool = False,
) -> list[ScorerSpec]:
    """Sensible scorers for a dataset, from its columns (and, given rows, its values).

    ``test`` -> code_exec; ``tools`` -> tool_call; ``schema`` (or ``response_format``)
    -> json against it; an expected answer
    that is always a number -> numeric; always a letter A–D -> choice; other
    expected text -> contains then exact; nothing to compare with and a judge
    -> judge. The first scorer is the primary one.
    """
    names = set(columns)
    if "test" in names:
        return [ScorerSpec(name="code_exec")]
    if "tools" in names:
        return [ScorerSpec(name="tool_call")]
    for column in ("schema", "response_format"):
        if column in names:
            return [ScorerSpec(name="json", args={"schema_column": column})]
    expected = expected_column or next((c for c in _EXPECTED_COLUMNS if c in names), None)
    if expected is None:
        return [ScorerSpec(name="judge")] if has_judge else []
    values = [row[expected] for row in rows or [] if row.get(expected) not in (None, "")]
    if values and all(_is_number(v) for v in values):
        return [ScorerSpec(name="numeric")]
    if values and all(_is_letter(v) for v in values):
        return [ScorerSpec(name="choice")]
    return [ScorerSpec(name="contains"), ScorerSpec(name="exact")]
