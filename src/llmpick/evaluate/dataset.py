"""Datasets: rows from CSV, JSONL, JSON, Parquet or a built-in suite, rendered to messages.

Columns are found by name, first match wins (override any with
:class:`ColumnMapping`):

- prompt: ``prompt``, ``input``, ``question``
- expected: ``expected``, ``answer``, ``reference``
- id: ``id`` (else the row number); category: ``category``; system: ``system``
- messages: ``messages`` (multi-turn; a list of ``{"role", "content"}``, or that
  list as a JSON string); it replaces the prompt.
- request fields: ``tools``, ``tool_choice``, ``parallel_tool_calls``,
  ``response_format`` (OpenAI's shapes, :mod:`llmpick.evaluate.row_tools`),
  passed into every model's request.

A Jinja2 template (from a file or a string) renders the user prompt from the
row's columns instead. It runs in a sandboxed environment with
``StrictUndefined``, so a misspelt column is an error naming the columns that
exist, not an empty string.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmpick.backends.base import Message
from llmpick.errors import DataError, MissingDependencyError, first_invalid
from llmpick.evaluate.row_tools import RowRequest, row_request
from llmpick.evaluate.scorers.base import ScorerSpec

__all__ = ["ColumnMapping", "Dataset", "Row", "load_dataset", "read_records"]

PROMPT_COLUMNS = ("prompt", "input", "question")
EXPECTED_COLUMNS = ("expected", "answer", "reference")

_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class ColumnMapping(BaseModel):
    """Which column holds what; ``None`` means "find it by the default names"."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    expected: str | None = None
    id: str | None = None
    category: str | None = None
    system: str | None = None
    messages: str | None = None


class Row(BaseModel):
    """One dataset row, rendered to the messages every model receives."""

    model_config = ConfigDict(extra="forbid")

    id: str
    index: int
    data: dict[str, Any]
    messages: list[Message]
    expected: str | None = None
    category: str | None = None
    #: tools / tool_choice / response_format the row asks the models to honour
    request: RowRequest = RowRequest()

    @property
    def prompt(self) -> str:
        """The last user message: what a scorer calls the prompt."""
        users = [m.content for m in self.messages if m.role == "user"]
        return users[-1] if users else ""

    def sha256(self) -> str:
        """Hash of the row's data and messages (a score depends on both)."""
        payload = json.dumps(
            {"data": self.data, "messages": [m.model_dump(mode="json") for m in self.messages]},
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Dataset(BaseModel):
    """Rows ready to evaluate, with where they came from."""

    model_config = ConfigDict(extra="forbid")

    name: str
    source: str
    columns: list[str]
    rows: list[Row]
    #: the column read as the expected answer, if any
    expected_column: str | None = None
    #: scorers used when the user names none (suites set these)
    default_scorers: list[ScorerSpec] = Field(default_factory=list)

    def sha256(self) -> str:
        """Hash of every row's content: identifies the dataset in a run's fingerprint."""
        digest = hashlib.sha256()
        for row in self.rows:
            digest.update(row.id.encode("utf-8"))
            digest.update(row.sha256().encode("ascii"))
        return digest.hexdigest()


# -- reading files ----------------------------------------------------------------


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read a CSV, TSV, JSONL, JSON or Parquet file into a list of dicts.

    Raises :class:`DataError` for a missing, unreadable, malformed or empty file
    and :class:`MissingDependencyError` (extra ``parquet``) without pyarrow.
    """
    if not path.exists():
        raise DataError(f"dataset file {path} does not exist", "check the path")
    if path.is_dir():
        raise DataError(f"dataset path {path} is a directory", "give a CSV/JSONL/JSON/Parquet file")
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"unknown dataset format '{path.suffix}' for {path}",
            "use .csv, .tsv, .jsonl, .json or .parquet, or a built-in suite such as humaneval",
        )
    if fmt == "parquet":
        records = _read_parquet(path)
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"dataset {path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                "save it as UTF-8",
            ) from exc
        except OSError as exc:
            raise DataError(f"cannot read dataset {path}: {exc.strerror}") from exc
        if fmt in ("csv", "tsv"):
            records = _read_csv(text, "\t" if fmt == "tsv" else ",", path)
        elif fmt == "jsonl":
            records = _read_jsonl(text, path)
        else:
            records = _read_json(text, path)
    if not records:
        raise DataError(f"dataset {path} has no rows", "add at least one row")
    return records


def _read_csv(text: str, delimiter: str, path: Path) -> list[dict[str, Any]]:
    try:
        # newline="" keeps newlines inside quoted fields (multi-line code, tests).
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        records = []
        for record in reader:
            if None in record:
                raise DataError(
                    f"{path}, line {reader.line_num}: more fields than the header has",
                    "quote fields that contain the delimiter",
                )
            records.append({k: ("" if v is None else v) for k, v in record.items()})
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from exc
    if reader.fieldnames is None:
        return []
    return records


def _read_jsonl(text: str, path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: invalid JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object per line")
        records.append(value)
    return records


def _read_json(text: str, path: Path) -> list[dict[str, Any]]:
    try:
        value = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(
                f"{path}: a JSON object must hold exactly one list of rows",
                'write a list of objects, or {"rows": [...]}',
            )
        value = lists[0]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DataError(f"{path}: expected a list of JSON objects")
    return value


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError("pyarrow", "parquet") from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise DataError(f"cannot read Parquet file {path}: {exc}") from exc
    records: list[dict[str, Any]] = table.to_pylist()
    return records


# -- mapping and rendering --------------------------------------------------------


def _pick(
    columns: list[str], explicit: str | None, defaults: tuple[str, ...], what: str
) -> str | None:
    if explicit is not None:
        if explicit not in columns:
            raise DataError(
                f"the {what} column '{explicit}' is not in the dataset",
                f"columns: {', '.join(columns)}",
            )
        return explicit
    lowered = {c.lower(): c for c in columns}
    for name in defaults:
        if name in lowered:
            return lowered[name]
    return None


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, ensure_ascii=False, default=str)


def _load_template(template: str, *, files: bool = True) -> jinja2.Template:
    # A value naming an existing file is a template file; anything else is the template.
    # ``files=False`` (what the workbench passes): always the text itself, since a web
    # page's string must never name a file the server reads.
    text = template
    if files and "\n" not in template and "{" not in template and len(template) < 4096:
        candidate = Path(template)
        if candidate.is_file():
            try:
                text = candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"cannot read template file {candidate}: {exc}") from exc
        elif candidate.suffix in (".j2", ".jinja", ".txt", ".md", ".jinja2"):
            raise DataError(f"template file {candidate} does not exist", "check the path")
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
    )
    try:
        return env.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise DataError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc


def _parse_messages(value: Any, where: str) -> list[Message]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: messages column is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
    messages = []
    for index, item in enumerate(value):
        if (
            not isinstance(item, dict)
            or item.get("role") not in ("system", "user", "assistant", "tool")
            or not isinstance(item.get("content") or "", str)
        ):
            raise DataError(
                f"{where}: each message needs a role (system, user, assistant or tool) "
                "and text content"
            )
        try:
            messages.append(Message.model_validate({**item, "content": item.get("content") or ""}))
        except ValidationError as exc:
            field, why = first_invalid(exc)
            raise DataError(
                f"{where}: message {index + 1} has a bad '{field}': {why}",
                "use OpenAI's shapes: tool_calls=[{id, type: function, function: {name, "
                "arguments}}] on an assistant message, tool_call_id on a tool message",
            ) from exc
    return messages


def build_rows(
    records: list[dict[str, Any]],
    mapping: ColumnMapping | None = None,
    template: str | None = None,
    system: str | None = None,
    source: str = "dataset",
    *,
    template_files: bool = True,
) -> tuple[list[str], list[Row], str | None]:
    """Map and render raw records into rows; returns (columns, rows, expected column).

    ``template_files``: whether a ``template`` naming an existing file reads that file
    (the CLI's ``--template``); callers that take templates from a web page pass False.
    """
    mapping = mapping or ColumnMapping()
    columns: list[str] = []
    for record in records:
        for key in record:
            if key not in columns:
                columns.append(str(key))
    prompt_col = _pick(columns, mapping.prompt, PROMPT_COLUMNS, "prompt")
    expected_col = _pick(columns, mapping.expected, EXPECTED_COLUMNS, "expected")
    id_col = _pick(columns, mapping.id, ("id",), "id")
    category_col = _pick(columns, mapping.category, ("category",), "category")
    system_col = _pick(columns, mapping.system, ("system",), "system")
    messages_col = _pick(columns, mapping.messages, ("messages",), "messages")
    compiled = _load_template(template, files=template_files) if template is not None else None
    if compiled is None and prompt_col is None and messages_col is None:
        raise DataError(
            f"{source} has no prompt column (looked for {', '.join(PROMPT_COLUMNS)}, messages)",
            f"columns: {', '.join(columns)}; name one with --column prompt=NAME or use --template",
        )
    rows: list[Row] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        row_id = _as_text(record.get(id_col)) if id_col else None
        row_id = row_id if row_id not in (None, "") else str(index + 1)
        assert row_id is not None
        if row_id in seen:
            raise DataError(
                f"{source}: duplicate row id '{row_id}'", "ids must be unique within a dataset"
            )
        seen.add(row_id)
        where = f"{source}, row {row_id}"
        row_system = system
        if row_system is None and system_col is not None:
            row_system = _as_text(record.get(system_col)) or None
        if compiled is not None:
            try:
                prompt = compiled.render(**{str(k): v for k, v in record.items()})
            except jinja2.UndefinedError as exc:
                raise DataError(
                    f"{where}: template: {exc.message}", f"columns: {', '.join(columns)}"
                ) from exc
            except jinja2.TemplateError as exc:
                raise DataError(f"{where}: template failed: {exc}") from exc
            messages = [Message(role="user", content=prompt)]
        elif messages_col is not None and record.get(messages_col) not in (None, ""):
            messages = _parse_messages(record[messages_col], where)
        else:
            text = _as_text(record.get(prompt_col)) if prompt_col else None
            if not text:
                raise DataError(f"{where}: the prompt column '{prompt_col}' is empty")
            prompt = text
            messages = [Message(role="user", content=prompt)]
        if row_system and not any(m.role == "system" for m in messages):
            messages.insert(0, Message(role="system", content=row_system))
        category = _as_text(record.get(category_col)) if category_col else None
        rows.append(
            Row(
                id=row_id,
                index=index,
                data=dict(record),
                messages=messages,
                expected=_as_text(record.get(expected_col)) if expected_col else None,
                category=category or None,
                request=row_request(record, where),
            )
        )
    return columns, rows, expected_col


def load_dataset(
    source: str | Path,
    mapping: ColumnMapping | None = None,
    template: str | None = None,
    system: str | None = None,
    limit: int | None = None,
) -> Dataset:
    """Load a dataset file or a built-in suite (``humaneval``) and render its rows.

    ``template`` is a Jinja2 template, or the path of a file holding one;
    ``system`` adds a system message to rows that have none; ``limit`` keeps
    the first N rows.
    """
    from llmpick.evaluate.suites import SUITES, load_suite

    text = str(source)
    path = Path(source)
    if text in SUITES and not path.exists():
        name = text
        records, defaults = load_suite(text)
    else:
        name = path.stem
        records = read_records(path)
        defaults = []
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit must be at least 1, got {limit}")
        records = records[:limit]
    columns, rows, expected = build_rows(records, mapping, template, system, source=text)
    return Dataset(
        name=name,
        source=text,
        columns=columns,
        rows=rows,
        expected_column=expected,
        default_scorers=defaults,
    )
