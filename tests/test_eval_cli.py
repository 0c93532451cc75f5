"""``llmpick eval``, ``results``, ``runs`` and ``rescore`` from the command line."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from conftest import free_port
from llmpick.cli import main

CSV = """id,question,answer,good,bad
1,Capital of France?,Paris,Paris,Lyon
2,2+2?,4,4,5
3,Colour of the sky?,blue,blue,blue
"""


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["llmpick", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "data.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def test_eval_json_results_runs_and_rescore(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["eval", str(data), "-m", "column:good", "-m", "column:bad", "--scorer", "exact"]
    code, out, err = run_cli([*base, "--format", "json"], capsys, monkeypatch)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["cells_total"] == 6 and summary["cells_cached"] == 0
    assert summary["models"]["column:good"]["mean"] == 1.0
    assert summary["comparisons"][0]["wins_a"] == 2
    assert Path("llmpick.db").exists()  # the default store
    run_id = summary["run_id"]

    code, out, _ = run_cli([*base, "--format", "json"], capsys, monkeypatch)
    assert json.loads(out)["cells_cached"] == 6

    code, out, _ = run_cli(["results", run_id, "--format", "json"], capsys, monkeypatch)
    cells = json.loads(out)["cells"]
    assert len(cells) == 6
    assert {"row_id", "model", "repeat", "output", "score"} <= set(cells[0])

    code, out, _ = run_cli(["results", run_id, "--format", "csv"], capsys, monkeypatch)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["row_id"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["column:bad"] == "Lyon" and rows[0]["column:good score"] == "1.0"

    code, out, _ = run_cli(["results", run_id, "--format", "markdown"], capsys, monkeypatch)
    assert out.splitlines()[0].startswith("| row_id | prompt | expected | column:good |")

    code, out, _ = run_cli(["results", run_id], capsys, monkeypatch)
    assert code == 0 and "Lyon" in out

    code, out, _ = run_cli(["runs", "--format", "json"], capsys, monkeypatch)
    assert len(json.loads(out)["runs"]) == 2
    code, out, _ = run_cli(["runs"], capsys, monkeypatch)
    assert run_id[:8] in out

    code, out, err = run_cli(
        ["rescore", run_id, "--scorer", "contains", "--format", "json"], capsys, monkeypatch
    )
    assert code == 0, err
    assert json.loads(out)["scorer"] == "contains"


def test_eval_table_shows_side_by_side_intervals_and_comparison(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_cli(
        ["eval", str(data), "-m", "column:good", "-m", "column:bad", "--db", "x.db"],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    assert "Lyon" in out and "Paris" in out  # side by side
    assert "95% CI" in out and "[0.000, 1.000]" in out
    assert "not distinguishable with n = 3" in out
    assert "measured" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "missing.csv", "-m", "column:good"], "does not exist"),
        (["eval", "empty.csv", "-m", "column:good"], "has no rows"),
        (["eval", "data.csv", "-m", "column:good", "--column", "prompt=qestion"], "columns: id"),
        (["eval", "data.csv", "-m", "column:good", "--scorer", "bogus"], "unknown scorer"),
        (
            ["eval", "data.csv", "-m", "column:good", "--scorer", 'json:schema={"type": 5}'],
            "schema",
        ),
        (["eval", "data.csv", "-m", "nosuchmodel"], "unknown model"),
        (["results", "abc", "--db", "none.db"], "no store"),
        (["results", "abc"], "no run 'abc'"),
    ],
)
def test_bad_input_is_one_line_error(
    data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    Path("empty.csv").write_text("", encoding="utf-8")
    Path("llmpick.db").touch()
    code, _out, err = run_cli(args, capsys, monkeypatch)
    assert code == 2
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or err.count("error:") == 1


def test_unreachable_judge_is_one_line_error(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("llmpick.yaml").write_text(
        "models:\n  deadjudge:\n    backend: openai\n    model: judge\n"
        f"    base_url: http://127.0.0.1:{free_port()}/v1\n"
        "    options: {max_retries: 0, connect_timeout_s: 2}\n",
        encoding="utf-8",
    )
    code, _, err = run_cli(
        ["eval", str(data), "-m", "column:good", "--scorer", "judge", "--judge", "deadjudge"],
        capsys,
        monkeypatch,
    )
    assert code == 2
    assert err.startswith("error: cannot connect to http://127.0.0.1:")
