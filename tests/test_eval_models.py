"""The evaluate stage with real models, real processes and a real loopback server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port, start_llama_server
from llmpick.backends.base import SamplingParams
from llmpick.context import Context
from llmpick.evaluate import RunOptions, load_dataset, run_eval
from llmpick.store import open_store

LLMPICK = str(Path(sys.executable).with_name("llmpick"))

QUESTIONS = """id,question,answer,category
1,What is the capital of France? Answer in one word.,Paris,geo
2,What is 2 + 2? Answer with a number.,4,math
3,What colour is the sky on a clear day? One word.,blue,geo
4,What is 10 minus 3? Answer with a number.,7,math
"""


def _cells(db: Path, run_id: str | None = None) -> list[tuple[str, str, int, str | None]]:
    raw = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        query = "SELECT model, row_id, repeat, generation_key FROM cells"
        if run_id:
            return raw.execute(query + " WHERE run_id = ?", (run_id,)).fetchall()
        return raw.execute(query).fetchall()
    finally:
        raw.close()


@pytest.mark.slow
def test_two_bundled_models_table_intervals_comparison_then_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("q.csv").write_text(QUESTIONS, encoding="utf-8")
    args = [
        LLMPICK, "eval", "q.csv", "-m", "smollm2-135m-instruct", "-m", "gemma-3-270m",
        "--max-tokens", "16", "--seed", "0", "--db", "m.db",
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "smollm2-135m-instruct" in out and "gemma-3-270m" in out
    assert "Capital" in out or "capital" in out  # the side-by-side table
    assert "95% CI" in out and "measured" in out
    assert "smollm2-135m-instruct" in out.split("95% intervals")[1]  # the comparison line
    assert "8 cells, 0 from the cache" in out

    second = subprocess.run([*args, "--format", "json"], capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["cells_total"] == summary["cells_cached"] == 8
    for name in ("smollm2-135m-instruct", "gemma-3-270m"):
        model = summary["models"][name]
        assert model["n"] == 4 and 0.0 <= model["ci95"][0] <= model["mean"] <= model["ci95"][1]
        assert model["latency_s"]["p50"] > 0
    (comparison,) = summary["comparisons"]
    assert comparison["wins_a"] + comparison["wins_b"] + comparison["ties"] == 4
    assert 0.0 <= comparison["p_value"] <= 1.0
    assert set(summary["categories"]) == {"geo", "math"}
    with open_store(tmp_path / "m.db") as store:
        assert store.db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 8
        assert store.db.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 16


def _interrupt_after(
    args: list[str], db: Path, cells: int, signum: int, stderr: Path
) -> subprocess.Popen[bytes]:
    """Start ``llmpick eval`` and send ``signum`` once ``cells`` cells are committed."""
    with stderr.open("wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 300
        done: list[tuple[str, str, int, str | None]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    done = _cells(db)
                except sqlite3.OperationalError:
                    done = []  # tables not created yet
            if len(done) >= cells:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be interrupted"
        os.kill(proc.pid, signum)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_mid_run_then_rerun_completes_without_loss_or_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = ["id,prompt"] + [f"{i},Write one sentence about the number {i}." for i in range(12)]
    Path("n.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    db = tmp_path / "k.db"
    args = [
        LLMPICK, "eval", "n.csv", "-m", "smollm2-135m-instruct", "--max-tokens", "32",
        "--seed", "1", "--db", str(db), "--format", "json",
    ]  # fmt: skip
    proc = _interrupt_after(args, db, 3, signum, tmp_path / "stderr.txt")
    if signum == signal.SIGINT:
        # typer turns KeyboardInterrupt into exit code 130
        assert proc.returncode == 130, (tmp_path / "stderr.txt").read_text()
        with open_store(db) as store:
            assert store.list_runs()[0].status == "interrupted"
    before = _cells(db)
    assert 3 <= len(before) < 12
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    after = _cells(db, summary["run_id"])
    assert len(after) == 12
    assert len({(m, r, k) for m, r, k, _ in after}) == 12
    assert all(g is not None for *_, g in after)
    # the cells that finished before the interruption were kept, not regenerated
    assert summary["cells_cached"] == len(before)
    assert set(before) <= set(after)
    with open_store(db) as store:
        assert store.db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 12
        assert store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
        assert store.get_run(summary["run_id"]).status == "finished"


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_all_164(tmp_path: Path) -> None:
    started = time.perf_counter()
    result = run_eval(
        Context(),
        load_dataset("humaneval"),
        ["column:canonical_solution"],
        None,
        SamplingParams.model_validate({"max_tokens": 16}),
        tmp_path / "h.db",
        RunOptions(score_workers=2),
    )
    elapsed = time.perf_counter() - started
    model = result.models["column:canonical_solution"]
    assert (model.n, model.mean, model.errors) == (164, 1.0, 0), result
    assert result.scorer == "code_exec"
    # two sandboxes at a time on a shared 2-core machine: ~30 s measured
    assert elapsed < 240, f"humaneval took {elapsed:.0f} s"


@pytest.mark.slow
@pytest.mark.network
def test_failed_rows_are_errors_not_scores_and_are_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    Path("llmpick.yaml").write_text(
        "models:\n"
        "  served:\n    backend: openai\n    model: smollm2\n"
        f"    base_url: http://127.0.0.1:{port}/v1\n"
        "    options: {max_retries: 0, connect_timeout_s: 2}\n"
        "  tiny-context:\n    backend: llamacpp\n"
        f"    model: {smollm2_path}\n    options: {{n_ctx: 128, n_threads: 2}}\n",
        encoding="utf-8",
    )
    long_prompt = "Repeat after me: " + "lorem ipsum dolor sit amet " * 60
    Path("d.jsonl").write_text(
        json.dumps({"id": "short", "prompt": "Say hi.", "expected": "hi"})
        + "\n"
        + json.dumps({"id": "long", "prompt": long_prompt, "expected": "lorem"})
        + "\n",
        encoding="utf-8",
    )
    params = SamplingParams.model_validate({"max_tokens": 8, "seed": 0})
    db = tmp_path / "e.db"
    warnings: list[str] = []
    options = RunOptions(on_warning=warnings.append)
    models = ["served", "tiny-context"]
    first = run_eval(Context(), "d.jsonl", models, ["contains"], params, db, options)
    # nothing listens on the port: every cell of 'served' is an error; the long
    # prompt does not fit tiny-context's window: that cell is an error too
    assert first.models["served"].errors == 2 and first.models["served"].n == 0
    assert first.models["tiny-context"].errors == 1 and first.models["tiny-context"].n == 1
    assert any("cannot connect" in w for w in warnings)
    assert any("run the same command again" in w for w in warnings)
    with open_store(db) as store:
        run = store.get_run(first.run_id)
        assert run.status == "incomplete"
        errors = {(c.model, c.row_id): c.error for c in store.get_cells(run.id) if c.error}
        assert "context window" in (errors[("tiny-context", "long")] or "")
        scored = {s.cell_id for s in store.get_scores(run.id)}
        assert all(c.id not in scored for c in store.get_cells(run.id) if c.error)

    server, _ = start_llama_server(smollm2_path, port=port)
    try:
        second = run_eval(Context(), "d.jsonl", models, ["contains"], params, db, options)
    finally:
        server.terminate()
        server.wait(30)
    assert second.run_id == first.run_id  # the unfinished run resumed
    assert second.models["served"].errors == 0 and second.models["served"].n == 2
    assert second.cells_cached == 1  # only tiny-context's short row was done before
    assert second.models["tiny-context"].errors == 1  # retried, and still too long
    with open_store(db) as store:
        cells = store.get_cells(first.run_id)
        assert len(cells) == 4
        assert store.get_run(first.run_id).status == "incomplete"


@pytest.mark.slow
def test_local_judge_scores_and_pairwise_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("d.csv").write_text(
        "id,question,good,bad\n1,Capital of France?,Paris,Lyon\n2,2+2?,4,5\n", encoding="utf-8"
    )
    params = SamplingParams.model_validate({"max_tokens": 8})
    warnings: list[str] = []
    options = RunOptions(judge="smollm2-135m-instruct", on_warning=warnings.append)
    scorers = ["judge:max_tokens=24", "pairwise:max_tokens=8"]
    models = ["column:good", "column:bad"]
    result = run_eval(Context(), "d.csv", models, scorers, params, tmp_path / "j.db", options)
    assert result.pairwise is not None
    assert set(result.pairwise["ranking"]) == set(models)
    assert result.pairwise["judge_calls"] == 4
    with open_store(tmp_path / "j.db") as store:
        judged = store.db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
        scores = store.get_scores(result.run_id)
        assert len(scores) >= 3  # an unparsable grade has no value but is stored
        assert all(s.scorer_key.startswith("judge") for s in scores)
    # 4 column cells + 4 judge grades + 4 pairwise verdicts
    assert judged == 12
    # judging a model with itself warns
    warnings.clear()
    run_eval(
        Context(),
        "d.csv",
        ["smollm2-135m-instruct"],
        ["judge:max_tokens=8"],
        params,
        tmp_path / "j.db",
        options,
    )
    assert any("grades its own outputs" in w for w in warnings)
