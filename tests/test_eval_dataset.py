"""Datasets: formats, column mapping, templates, suites, and bad input."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from llmpick.errors import DataError, MissingDependencyError
from llmpick.evaluate import ColumnMapping, load_dataset
from llmpick.evaluate.suites.humaneval import INSTRUCTION

RECORDS = [
    {"id": "q1", "question": "Capital of France?", "answer": "Paris", "category": "geo"},
    {"id": "q2", "question": "2 + 2?", "answer": "4", "category": "math"},
]


def _write(path: Path, fmt: str, records: list[dict[str, Any]] = RECORDS) -> Path:
    if fmt == "csv":
        cols = list(records[0])
        lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps({"rows": records}), encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "parquet"])
def test_every_format_gives_the_same_rows(tmp_path: Path, fmt: str) -> None:
    ds = load_dataset(_write(tmp_path / f"data.{fmt}", fmt))
    assert [r.id for r in ds.rows] == ["q1", "q2"]
    assert ds.rows[0].prompt == "Capital of France?"
    assert ds.rows[0].expected == "Paris"
    assert ds.rows[1].category == "math"
    assert ds.expected_column == "answer"
    assert ds.columns == ["id", "question", "answer", "category"]
    assert len(ds.sha256()) == 64


def test_parquet_without_pyarrow_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "d.parquet", "parquet")
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(MissingDependencyError) as info:
        load_dataset(path)
    assert info.value.extra == "parquet"
    assert "llmpick[parquet]" in info.value.one_line()


def test_mapping_template_system_and_limit(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "csv")
    template = tmp_path / "prompt.j2"
    template.write_text("[{{ category }}] Answer briefly: {{ question }}", encoding="utf-8")
    ds = load_dataset(
        path,
        mapping=ColumnMapping(expected="category", id="question"),
        template=str(template),
        system="Be terse.",
        limit=1,
    )
    assert len(ds.rows) == 1
    row = ds.rows[0]
    assert row.id == "Capital of France?"
    assert row.expected == "geo"
    assert [m.role for m in row.messages] == ["system", "user"]
    assert row.messages[1].content == "[geo] Answer briefly: Capital of France?"
    inline = load_dataset(path, template="Q: {{ question | upper }}")
    assert inline.rows[1].prompt == "Q: 2 + 2?"


def test_template_errors_name_the_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "csv")
    with pytest.raises(DataError, match="'questoin' is undefined") as info:
        load_dataset(path, template="{{ questoin }}")
    assert "columns: id, question, answer, category" in info.value.one_line()
    with pytest.raises(DataError, match="syntax"):
        load_dataset(path, template="{{ question ")
    # the sandbox refuses to reach Python internals
    with pytest.raises(DataError):
        load_dataset(path, template="{{ question.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(path, template="missing.j2")


def test_multi_turn_messages_column(tmp_path: Path) -> None:
    records = [
        {
            "id": 1,
            "messages": [
                {"role": "user", "content": "My name is Ada."},
                {"role": "assistant", "content": "Hello Ada."},
                {"role": "user", "content": "What is my name?"},
            ],
            "expected": "Ada",
        }
    ]
    path = _write(tmp_path / "d.jsonl", "jsonl", records)
    row = load_dataset(path, system="sys").rows[0]
    assert [m.role for m in row.messages] == ["system", "user", "assistant", "user"]
    assert row.prompt == "What is my name?"
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(
        'id,messages\n1,"[{""role"": ""user"", ""content"": ""hi""}]"\n', encoding="utf-8"
    )
    assert load_dataset(csv_path).rows[0].prompt == "hi"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n")
    with pytest.raises(DataError, match="role"):
        load_dataset(bad)


def test_bad_inputs_are_one_line_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        load_dataset(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("prompt,expected\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        load_dataset(header_only)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(binary)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a"}\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        load_dataset(broken)
    unknown = tmp_path / "data.xlsx"
    unknown.write_text("x")
    with pytest.raises(DataError, match="unknown dataset format"):
        load_dataset(unknown)
    no_prompt = _write(tmp_path / "np.csv", "csv", [{"text": "a", "label": "b"}])
    with pytest.raises(DataError, match="no prompt column") as info:
        load_dataset(no_prompt)
    assert "columns: text, label" in info.value.one_line()
    with pytest.raises(DataError, match="'answr' is not in the dataset") as info:
        load_dataset(_write(tmp_path / "d.csv", "csv"), mapping=ColumnMapping(expected="answr"))
    assert "columns: id, question, answer, category" in info.value.one_line()
    dup = _write(tmp_path / "dup.csv", "csv", [{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}])
    with pytest.raises(DataError, match="duplicate row id"):
        load_dataset(dup)
    unreadable = _write(tmp_path / "locked.csv", "csv")
    unreadable.chmod(0)
    try:
        if not unreadable.read_bytes():  # running as root: permissions do not apply
            pass
    except PermissionError:
        with pytest.raises(DataError, match="cannot read"):
            load_dataset(unreadable)
    finally:
        unreadable.chmod(0o600)


def test_humaneval_suite_rows() -> None:
    ds = load_dataset("humaneval")
    assert len(ds.rows) == 164
    assert [s.name for s in ds.default_scorers] == ["code_exec"]
    row = ds.rows[0]
    assert row.id == "HumanEval/0"
    assert row.category == "humaneval"
    assert row.prompt.startswith(INSTRUCTION)
    assert row.data["canonical_solution"].startswith(row.data["code_prompt"])
    assert row.data["test"].rstrip().endswith(f"check({row.data['entry_point']})")
    assert load_dataset("humaneval", limit=3).rows[-1].id == "HumanEval/2"


def test_csv_keeps_newlines_inside_quoted_fields(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import csv

    from llmpick.evaluate import load_dataset

    path = tmp_path / "code.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "test"])
        writer.writerow(["Write add(a, b).", "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"])
    rows = load_dataset(path).rows
    assert rows[0].data["test"] == "assert add(1, 2) == 3\nassert add(0, 0) == 0\n"
