"""``llmpick choose`` end to end with the bundled models, plus its ranking and verdict rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llmpick.backends.base import Backend
from llmpick.backends.spec import ModelSpec
from llmpick.choose import ChooseOptions, RankedModel, choose, sample_data_path
from llmpick.choose.ranking import _pareto, _verdict
from llmpick.context import Context
from llmpick.evaluate import ComparisonSummary, EvalResult

LLMPICK = str(Path(sys.executable).with_name("llmpick"))
ENV = {**os.environ, "COLUMNS": "200"}

QUESTIONS = """id,question,answer,category
1,What is the capital of France? Answer in one word.,Paris,geo
2,What is 2 + 2? Answer with a number.,4,math
3,What colour is the sky on a clear day? One word.,blue,geo
"""


def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for the whole session: runs on the same data reuse each other's cells."""
    return tmp_path_factory.getbasetemp() / "choose-shared.db"


def run_choose(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LLMPICK, "choose", *args], capture_output=True, text=True, cwd=cwd, env=ENV,
        timeout=timeout,
    )  # fmt: skip


# -- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
def test_limited_default_run_then_rerun_reuses_everything(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    db = str(shared_db(tmp_path_factory))
    first = run_choose(tmp_path, "--limit", "6", "--db", db, "--out", "report")
    assert first.returncode == 0, first.stderr
    assert "[3/5] evaluate" in first.stderr  # the progress display
    assert "report: report/report.html" in first.stdout
    doc = json.loads((tmp_path / "report" / "result.json").read_text())
    for key in ("winner", "shortlist", "evaluation", "performance", "cost", "verdict"):
        assert key in doc
    assert doc["data"]["bundled_sample"] is True and doc["data"]["rows"] == 6
    names = {c["name"]: c for c in doc["candidates"]}
    assert names["smollm2-135m-instruct"]["status"] == "evaluated"
    assert names["gemma-3-270m"]["status"] == "evaluated"
    not_runnable = [c for c in doc["candidates"] if c["status"] == "not-runnable"]
    assert 3 <= len(doc["shortlist"]["candidates"]) <= 5
    assert not_runnable and all(c["how_to_run"] for c in not_runnable)
    assert doc["evaluation"]["cells_total"] == 12
    for perf in doc["performance"].values():
        assert perf["measured"]["output_tokens_per_second"] > 0
        assert perf["measured"]["peak_memory_bytes"] > 0
        assert perf["estimated"]["total_bytes"] > 0 and perf["estimated"]["basis"]
    kinds = {r["model"]: r["kind"] for r in doc["cost"]}
    assert kinds["smollm2-135m-instruct"] == "measured"
    assert any(k == "estimated" for k in kinds.values())
    assert doc["verdict"]["status"] in {"winner", "tied", "trade-off"}
    # The shortlist is for this machine: calibrated, by bench --calibrate or choose's own bench.
    assert "calibrated on this machine" in doc["shortlist"]["calibration"]
    assert all(
        c["decode_label"] == "estimated (calibrated)" for c in doc["shortlist"]["candidates"]
    )

    started = time.monotonic()
    second = run_choose(tmp_path, "--limit", "6", "--db", db, "--out", "report2", "--format",
                        "json")  # fmt: skip
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["evaluation"]["cells_cached"] == again["evaluation"]["cells_total"] == 12
    assert all(p["reused"] for p in again["performance"].values())
    assert again["ranking"] == doc["ranking"]
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_user_csv_two_models_and_a_crashing_candidate(tmp_path: Path) -> None:
    (tmp_path / "q.csv").write_text(QUESTIONS, encoding="utf-8")
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(4096))
    result = run_choose(
        tmp_path, "--data", "q.csv", "-m", "smollm2-135m-instruct", "-m", "gemma-3-270m",
        "-m", f"llamacpp:{corrupt}", "--task", "chat", "--languages", "en", "--db", "c.db",
        "--max-tokens", "24", "--weights", "quality=1,speed=0,cost=0",
        "--gpu-hourly-usd", "0.1", "--out", "out",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    status = {c["name"]: c for c in doc["candidates"]}
    crashed = status[f"llamacpp:{corrupt}"]
    assert crashed["status"] == "failed" and crashed["error"]
    assert status["smollm2-135m-instruct"]["status"] == "evaluated"
    assert status["gemma-3-270m"]["status"] == "evaluated"
    assert set(doc["evaluation"]["models"]) == {"smollm2-135m-instruct", "gemma-3-270m"}
    assert doc["evaluation"]["scorer"] == "auto"  # text and number answers: per row
    assert len(doc["evaluation"]["comparisons"]) == 1
    assert doc["shortlist"]["task"] == "chat"
    assert all(abs(r["weighted_score"] - r["quality"]) < 1e-3 for r in doc["ranking"])
    measured = [r for r in doc["cost"] if r["kind"] == "measured"]
    assert measured and all(r["hourly"]["usd_per_hour"] == 0.1 for r in measured)
    assert "failed" in result.stdout
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Failures" in md and "corrupt.gguf" in md


class _CountingContext(Context):
    """A real context that remembers which models it loaded."""

    loads: list[str]

    def open_backend(self, spec: str | ModelSpec) -> Backend:
        self.loads.append(spec if isinstance(spec, str) else spec.name)
        return super().open_backend(spec)


@pytest.mark.slow
def test_each_model_is_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.csv").write_text(QUESTIONS, encoding="utf-8")
    context = _CountingContext()
    context.loads = []
    options = ChooseOptions(
        data=tmp_path / "q.csv", models=["smollm2-135m-instruct"], task="chat",
        db_path=tmp_path / "c.db", max_tokens=8, bench_requests=1, bench_prompt_tokens=16,
        bench_max_tokens=4,
    )  # fmt: skip
    result = choose(context, options)
    evaluated = [c.name for c in result.candidates if c.status == "evaluated"]
    assert "smollm2-135m-instruct" in evaluated
    assert sorted(context.loads) == sorted(evaluated), "probe, eval and bench share one load"
    memory = result.performance["smollm2-135m-instruct"]["measured"]["peak_memory_bytes"]
    assert memory > 50e6, "the load before the bench is counted"


@pytest.mark.slow
def test_full_default_run_finishes_in_ten_minutes(tmp_path: Path) -> None:
    """The no-argument run on a fresh store: bundled sample (40 rows), bundled models."""
    started = time.monotonic()
    result = run_choose(tmp_path, timeout=900)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "llmpick-report" / "result.json").read_text())
    assert doc["data"]["rows"] == 40
    assert doc["evaluation"]["cells_total"] == 80
    assert set(doc["evaluation"]["categories"]) == {
        "general", "coding", "arithmetic", "json", "zh", "vi", "th"
    }  # fmt: skip
    assert (tmp_path / "llmpick.db").exists()
    assert (tmp_path / "llmpick-report" / "report.html").stat().st_size > 1_000_000
    assert elapsed < 600, f"default run took {elapsed:.0f} s"


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--data", "missing.csv"], "missing.csv"),
        (["-m", "no-such-model"], "unknown model"),
        (["--weights", "quality=x"], "weight"),
        (["--task", "juggling"], "unknown task"),
        (["--device", "no-such-gpu"], "no-such-gpu"),
        (["--license", "gpl"], "license"),
        (["--gpu-hourly-usd", "-2"], "gpu-hourly-usd"),
        (["--scorer", "nope", "--limit", "1", "-m", "column:expected"], "scorer"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    result = run_choose(tmp_path, "--db", "x.db", *args, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0].lower(), result.stderr
    assert "Traceback" not in result.stderr


def test_sample_dataset_shape() -> None:
    from llmpick.evaluate import load_dataset
    from llmpick.evaluate.scorers.auto import row_kind

    ds = load_dataset(sample_data_path())
    assert len(ds.rows) == 40
    assert ds.columns == ["id", "category", "prompt", "expected", "test", "entry_point", "schema"]
    kinds = [row_kind(r.data, r.expected) for r in ds.rows]
    assert {"code_exec", "json", "numeric", "contains"} == set(kinds)
    prompts = " ".join(r.prompt for r in ds.rows)
    for text in ("首都", "Việt Nam", "ประเทศไทย", "capital"):
        assert text in prompts


def test_sample_code_tasks_pass_with_reference_solutions() -> None:
    """The coding rows' tests are right: a correct solution passes every one."""
    from llmpick.evaluate import load_dataset
    from llmpick.evaluate.scorers import Cell
    from llmpick.evaluate.scorers.auto import auto

    solutions = {
        "add": "def add(a, b):\n    return a + b",
        "is_even": "def is_even(n):\n    return n % 2 == 0",
        "reverse_string": "def reverse_string(s):\n    return s[::-1]",
        "max_of_list": "def max_of_list(xs):\n    return max(xs)",
        "square": "def square(x):\n    return x * x",
        "count_vowels": "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s)",
        "factorial": "def factorial(n):\n    return 1 if n == 0 else n * factorial(n - 1)",
        "is_palindrome": "def is_palindrome(s):\n    return s == s[::-1]",
    }
    score = auto()
    ds = load_dataset(sample_data_path())
    for row in ds.rows:
        if row.category == "coding":
            output = f"```python\n{solutions[row.data['entry_point']]}\n```"
        elif row.category == "json":
            output = row.expected or ""
        else:
            output = f"The answer is {row.expected}"
        cell = Cell(row_id=row.id, row=row.data, model="ref", prompt=row.prompt, output=output,
                    expected=row.expected)  # fmt: skip
        result = score(cell)
        assert result.value == 1.0, (row.id, result.explanation)


# -- the ranking and verdict rules (pure arithmetic) ----------------------------------------


def _ranked(name: str, quality: float, weighted: float, rank: int) -> RankedModel:
    return RankedModel(
        model=name, rank=rank, quality=quality, quality_ci95=(0.0, 1.0), n=40,
        output_tokens_per_second=10.0, speed_kind="measured", latency_p50_s=1.0,
        usd_per_mtok=1.0, quality_score=quality, speed_score=0.2, cost_score=1.0,
        weighted_score=weighted,
    )  # fmt: skip


def _evaluation(significant: bool, wins_a: int, wins_b: int) -> EvalResult:
    comparison = ComparisonSummary(
        a="A", b="B", n=40, wins_a=wins_a, wins_b=wins_b, ties=40 - wins_a - wins_b,
        p_value=0.01 if significant else 0.4, test="mcnemar", significant=significant,
        sentence="A vs B",
    )  # fmt: skip
    return EvalResult(
        run_id="r", cells_total=80, cells_cached=0, models={}, comparisons=[comparison],
        categories={},
    )  # fmt: skip


def _scores(values: list[float]) -> dict[str, float]:
    return {str(i): v for i, v in enumerate(values)}


def test_verdict_names_a_winner_only_when_separated() -> None:
    ranked = [_ranked("A", 0.8, 0.7, 1), _ranked("B", 0.3, 0.4, 2)]
    win = _verdict(ranked, _evaluation(True, 20, 0), {})
    assert win.status == "winner" and win.winner == "A"

    rows = {"A": _scores([1, 0, 1, 1, 0, 1]), "B": _scores([1, 0, 0, 1, 0, 1])}
    tie = _verdict(ranked, _evaluation(False, 1, 0), rows)
    assert tie.status == "tied" and tie.winner is None and tie.tied == ["A", "B"]
    assert tie.prompts_needed["B"] is not None and tie.prompts_needed["B"] > 0
    assert "more prompts" in tie.sentence

    trade = _verdict(ranked, _evaluation(True, 0, 20), {})
    assert trade.status == "trade-off" and trade.winner is None

    single = _verdict(ranked[:1], _evaluation(False, 0, 0), {})
    assert single.status == "single" and single.winner is None
    assert _verdict([], _evaluation(False, 0, 0), {}).status == "none"


def test_pareto_front() -> None:
    points: dict[str, Any] = {"a": (0.9, 5.0), "b": (0.5, 1.0), "c": (0.4, 2.0), "d": (0.9, 6.0)}
    assert _pareto(points) == ["a", "b"]


def test_auto_scorer_dispatch_and_no_reference() -> None:
    from llmpick.evaluate.scorers import Cell
    from llmpick.evaluate.scorers.auto import auto, row_kind

    assert row_kind({"test": "assert f() == 1", "schema": "{}"}, "x") == "code_exec"
    assert row_kind({"test": "", "schema": '{"type": "object"}'}, None) == "json"
    assert row_kind({}, "1,234") == "numeric"
    assert row_kind({}, "Paris") == "contains"
    assert row_kind({}, None) == "judge"
    score = auto()
    cell = Cell(row_id="1", row={}, model="m", prompt="hi", output="hello")
    result = score(cell)
    assert result.value is None and result.label == "no-reference"
    wrong = score(cell.model_copy(update={"expected": "42", "output": "I think 41."}))
    assert wrong.value == 0.0 and wrong.explanation.startswith("[numeric]")
