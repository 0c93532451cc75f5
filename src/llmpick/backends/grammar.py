"""JSON Schema and tool calls as llama.cpp grammars (GBNF): constrained decoding for local models.

The schema-to-GBNF translation is llama-cpp-python's (``llama_cpp.llama_grammar``,
a port of llama.cpp's ``json_schema_to_grammar``), with three corrections so that
every output the grammar allows parses as JSON and validates against the schema:

- string characters exclude the control characters JSON forbids unescaped
  (its ``char`` rule lets a raw newline into a string);
- literals (property names, enum and const values) escape backslashes, which a
  GBNF literal would otherwise read as its own escapes;
- integer ``minimum``/``maximum`` ranges of at most :data:`MAX_INTEGER_ENUM` values
  become an enum (the translator ignores bounds).

Keywords the translator cannot enforce (number bounds, ``format: email``,
``uniqueItems``, ``not``…) are listed by :func:`unenforced_keywords`; a request
with ``strict: true`` that uses one is refused rather than half-enforced.

A tool-call grammar allows one call (or up to :data:`MAX_PARALLEL_CALLS`, only with
``parallel_tool_calls: true``: a small model asked for "one or more" repeats its call)
in the ``<tool_call>`` format of :mod:`llmpick.backends.tool_format`, each naming
an allowed function with arguments matching its schema; with ``tool_choice: auto``
an answer that is not a call is allowed too (any text that does not start with
``<`` or whitespace, or the JSON of ``response_format`` when one is given).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from typing import Any

import llama_cpp
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from llama_cpp import llama_grammar

from llmpick.backends.tool_format import CALL_CLOSE, CALL_OPEN
from llmpick.backends.tools import ToolChoice, ToolDef
from llmpick.errors import UnsupportedRequestError

__all__ = [
    "MAX_INTEGER_ENUM",
    "MAX_PARALLEL_CALLS",
    "Grammar",
    "grammar_sampler",
    "json_grammar",
    "tool_call_grammar",
    "unenforced_keywords",
]

#: calls one answer may hold with ``parallel_tool_calls: true`` (a small model repeats itself)
MAX_PARALLEL_CALLS = 8
#: integer ranges up to this many values are enforced (as an enum); wider ones are not
MAX_INTEGER_ENUM = 1000

_HEX = "[0-9a-fA-F]"
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" ' + " ".join([_HEX] * 4) + ")"
_UNENFORCED = {
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "integer": ("exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "array": ("uniqueItems", "contains", "minContains", "maxContains"),
    "object": (
        "patternProperties", "minProperties", "maxProperties", "propertyNames",
        "dependentRequired", "dependentSchemas", "unevaluatedProperties",
    ),
    "any": ("not", "if", "then", "else"),
}  # fmt: skip
_FORMATS = {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
_THINK_BODY = '( [^<] | "<" [^/] )*'


@dataclass(frozen=True)
class Grammar:
    """A GBNF grammar and its root rule."""

    text: str
    root: str = "root"


class _Converter(llama_grammar.SchemaConverter):
    def _format_literal(self, literal: str) -> str:
        escaped = re.sub(
            r'[\\"\x00-\x1f]',
            lambda m: {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
                m.group(0), f"\\x{ord(m.group(0)):02x}"
            ),
            literal,
        )
        return f'"{escaped}"'

    def rules(self) -> dict[str, str]:
        rules: dict[str, str] = dict(self._rules)
        if "char" in rules:
            rules["char"] = _JSON_CHAR
        return rules


def _integer_ranges(schema: Any) -> Any:
    """A copy of ``schema`` with small integer ranges as enums (the translator skips bounds)."""
    if isinstance(schema, list):
        return [_integer_ranges(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _integer_ranges(v) for k, v in schema.items()}
    low, high = out.get("minimum"), out.get("maximum")
    if (
        out.get("type") == "integer"
        and "enum" not in out
        and isinstance(low, int)
        and isinstance(high, int)
        and 0 <= high - low < MAX_INTEGER_ENUM
    ):
        out = {k: v for k, v in out.items() if k not in ("minimum", "maximum", "type")}
        out["enum"] = list(range(low, high + 1))
    return out


def unenforced_keywords(schema: Any, path: str = "$") -> list[str]:
    """Where ``schema`` uses a keyword the grammar cannot enforce (``path: keyword``)."""
    found: list[str] = []
    if isinstance(schema, list):
        for i, sub in enumerate(schema):
            found += unenforced_keywords(sub, f"{path}[{i}]")
        return found
    if not isinstance(schema, dict):
        return found
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    for k in [*kinds, "any"]:
        for keyword in _UNENFORCED.get(str(k), ()):
            if keyword in schema:
                found.append(f"{path}: {keyword}")
    if "integer" in kinds and ("minimum" in schema or "maximum" in schema):
        low, high = schema.get("minimum"), schema.get("maximum")
        if not (isinstance(low, int) and isinstance(high, int) and high - low < MAX_INTEGER_ENUM):
            found.append(f"{path}: minimum/maximum (only ranges of <= {MAX_INTEGER_ENUM} values)")
    if "format" in schema and schema["format"] not in _FORMATS:
        found.append(f"{path}: format {schema['format']}")
    properties = schema.get("properties")
    if isinstance(properties, dict):
        missing = [r for r in schema.get("required", []) if r not in properties]
        if missing:
            found.append(f"{path}: required names {', '.join(missing)} not in properties")
    for key, sub in schema.items():
        if key in ("properties", "$defs", "definitions") and isinstance(sub, dict):
            for name, prop in sub.items():
                found += unenforced_keywords(prop, f"{path}.{name}")
        elif key in ("items", "prefixItems", "anyOf", "oneOf", "allOf", "additionalProperties"):
            found += unenforced_keywords(sub, f"{path}.{key}")
    return found


def _visit(converter: _Converter, schema: dict[str, Any], name: str) -> str:
    """The grammar rule of ``schema``; a schema that is not JSON Schema is the caller's 400."""
    param = "tools" if name.startswith("fn") else "response_format"
    try:
        validator_for(schema).check_schema(schema)
        resolved = converter.resolve_refs(_integer_ranges(copy.deepcopy(schema)), name)
        rule: str = converter.visit(resolved, name)
    except SchemaError as exc:
        raise UnsupportedRequestError(
            f"{param}: the schema is not valid JSON Schema: {exc.message}",
            "fix the schema",
            param=param,
        ) from exc
    except (AssertionError, KeyError, ValueError, TypeError, RecursionError) as exc:
        # llama-cpp-python's translator asserts on schemas it does not know
        raise UnsupportedRequestError(
            f"{param}: no grammar could be built from this schema ({exc!s:.200})",
            "simplify the schema (see docs/tools.md for what is supported)",
            param=param,
        ) from exc
    return rule


def _format(rules: dict[str, str]) -> str:
    return "\n".join(f"{name} ::= {rule}" for name, rule in sorted(rules.items()))


def _prefix(thinking: str | None) -> str:
    """The ``<think>`` block a reasoning model writes first (None: no reasoning block)."""
    if thinking == "open":  # the prompt opened the block
        return f'{_THINK_BODY} "</think>" [ \\n]* '
    if thinking == "optional":
        return f'("<think>" {_THINK_BODY} "</think>" [ \\n]*)? '
    return ""


@functools.lru_cache(maxsize=256)
def _json_grammar(schema_json: str, thinking: str | None) -> Grammar:
    converter = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    answer = _visit(converter, json.loads(schema_json), "answer")
    rules = converter.rules()
    rules["root"] = _prefix(thinking) + answer
    return Grammar(_format(rules))


def json_grammar(schema: dict[str, Any], thinking: str | None = None) -> Grammar:
    """A grammar whose every sentence is JSON valid against ``schema``.

    ``thinking``: ``"optional"`` allows a ``<think>`` block first, ``"open"`` starts
    inside one (the prompt opened it).
    """
    return _json_grammar(json.dumps(schema, sort_keys=True), thinking)


@functools.lru_cache(maxsize=256)
def _tool_grammar(
    tools_json: str, choice_json: str, parallel: bool, answer_json: str, thinking: str | None
) -> Grammar:
    tools = [ToolDef.model_validate(t) for t in json.loads(tools_json)]
    choice = json.loads(choice_json)
    if isinstance(choice, dict):
        tools = [t for t in tools if t.function.name == choice["function"]["name"]]
    converter = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    alternatives = []
    for i, tool in enumerate(tools):
        arguments = _visit(converter, tool.function.arguments_schema(), f"fn{i}-args")
        name = converter._format_literal(json.dumps(tool.function.name))
        head = converter._format_literal(CALL_OPEN + '\n{"name": ')
        middle = converter._format_literal(', "arguments": ')
        tail = converter._format_literal("}\n" + CALL_CLOSE)
        alternatives.append(f"{head} {name} {middle} {arguments} {tail}")
    rules = converter.rules()
    rules["call"] = " | ".join(alternatives)
    rules["calls"] = (
        llama_grammar._build_repetition("call", 1, MAX_PARALLEL_CALLS, separator_rule='"\\n"')
        if parallel
        else "call"
    )
    body = "calls"
    if choice == "auto":
        if answer_json:
            rules["answer"] = _visit(converter, json.loads(answer_json), "answer-json")
            rules.update(converter.rules())
        else:
            rules["answer"] = "[^< \\t\\n\\r] [\\U00000000-\\U0010FFFF]*"
        body = "(calls | answer)"
    rules["root"] = _prefix(thinking) + body
    return Grammar(_format(rules))


def tool_call_grammar(
    tools: list[ToolDef],
    choice: ToolChoice | None,
    *,
    parallel: bool = True,
    answer_schema: dict[str, Any] | None = None,
    thinking: str | None = None,
) -> Grammar:
    """A grammar of tool calls over ``tools`` (``choice``: auto, required or a named one).

    With ``auto`` (or None) a plain answer is allowed as well, or the JSON of
    ``answer_schema`` when ``response_format`` asks for one.
    """
    choice_doc: Any = (
        choice.model_dump()
        if choice is not None and not isinstance(choice, str)
        else (choice or "auto")
    )
    return _tool_grammar(
        json.dumps([t.model_dump(exclude_none=True) for t in tools], sort_keys=True),
        json.dumps(choice_doc, sort_keys=True),
        parallel,
        json.dumps(answer_schema, sort_keys=True) if answer_schema is not None else "",
        thinking,
    )


def grammar_sampler(vocab: Any, grammar: Grammar) -> Any:
    """A llama.cpp grammar sampler for ``vocab``; a grammar llama.cpp cannot parse is refused."""
    sampler = llama_cpp.llama_sampler_init_grammar(
        vocab, grammar.text.encode("utf-8"), grammar.root.encode("utf-8")
    )
    if not sampler:
        raise UnsupportedRequestError(
            "llama.cpp could not build a grammar from this schema",
            "simplify the schema (see docs/tools.md for what is supported)",
            param="response_format",
        )
    return sampler
