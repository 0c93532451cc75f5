"""The workbench without a browser: CSRF, paging and filters, votes, export, restart-resume."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port
from llmpick.store import open_store
from llmpick.ui import SCHEMA_VERSION
from llmpick.ui.grid import GridFilter, grid_page
from llmpick.ui.models import SheetSettings
from llmpick.ui.sheets import WorkbenchStore
from llmpick.ui.votes import cast_vote, human_ranking, next_vote
from ui_server import start_ui, stop_ui


def _csv(path: Path, rows: list[dict[str, Any]]) -> bytes:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path.read_bytes()


ROWS = [
    {"id": str(i), "question": f"q{i}", "answer": "yes" if i % 3 else "no",
     "good": "yes", "bad": "no" if i % 2 else "yes", "category": "odd" if i % 2 else "even"}
    for i in range(1, 31)
]  # fmt: skip


def _wait(client: Any, sheet: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        progress: dict[str, Any] = client.get(f"/api/sheets/{sheet}/progress").json()
        if progress["state"] not in ("running",) and progress["done"] == progress["total"]:
            return progress
        time.sleep(0.1)
    raise AssertionError(f"not finished: {progress}")


@pytest.mark.network
def test_api_csrf_columns_grid_summary_votes(tmp_path: Path) -> None:
    port = free_port()
    process = start_ui(tmp_path / "llmpick.db", port, tmp_path)
    try:
        _api_checks(tmp_path, f"http://127.0.0.1:{port}")
    finally:
        stop_ui(process)


def _api_checks(tmp_path: Path, base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        token = client.cookies["llmpick_csrf"]
        body = _csv(tmp_path / "d.csv", ROWS)
        assert client.post("/api/sheets?filename=d.csv", content=body).status_code == 403
        bad = {"x-csrf-token": "x" * 43}
        assert (
            client.post("/api/sheets?filename=d.csv", content=body, headers=bad).status_code == 403
        )
        ok = {"x-csrf-token": token}
        sheet = client.post("/api/sheets?filename=d.csv", content=body, headers=ok).json()
        assert sheet["schema_version"] == SCHEMA_VERSION and sheet["n_rows"] == 30
        sid = sheet["id"]
        for kind, spec in [("model", "column:good"), ("model", "column:bad"), ("scorer", "exact")]:
            r = client.post(
                f"/api/sheets/{sid}/columns", json={"kind": kind, "spec": spec}, headers=ok
            )
            assert r.status_code == 200, r.text
            _wait(client, sid)
        again = client.post(f"/api/sheets/{sid}/columns", json={"kind": "scorer", "spec": "exact"},
                            headers=ok)  # fmt: skip
        assert again.status_code == 400 and "already" in again.json()["error"]
        unknown = client.post(f"/api/sheets/{sid}/columns",
                              json={"kind": "model", "spec": "nope:x"}, headers=ok)  # fmt: skip
        assert unknown.status_code == 403  # not a model the operator declared

        grid = client.get(f"/api/sheets/{sid}/grid", params={"offset": 10, "limit": 5}).json()
        assert grid["total_rows"] == 30
        assert [r["row_id"] for r in grid["rows"]] == ["11", "12", "13", "14", "15"]
        assert grid["rows"][0]["cells"][0]["output"] == "yes"
        odd = client.get(f"/api/sheets/{sid}/grid", params={"category": "odd"}).json()
        assert odd["total_rows"] == 15
        disagree = client.get(f"/api/sheets/{sid}/grid", params={"disagree": "true"}).json()
        assert disagree["total_rows"] == 15  # column:good and column:bad differ on odd rows
        ranked = client.get(f"/api/sheets/{sid}/grid", params={"sort": "-column:bad"}).json()
        scores = [r["cells"][1]["score"] for r in ranked["rows"]]
        assert scores == sorted(scores, reverse=True) and scores[0] != scores[-1]
        worst = client.get(f"/api/sheets/{sid}/grid", params={"sort": "column:bad"}).json()
        assert worst["rows"][0]["cells"][1]["score"] == min(scores)
        found = client.get(f"/api/sheets/{sid}/grid", params={"search": "q17"}).json()
        assert [r["row_id"] for r in found["rows"]] == ["17"]

        summary = client.get(f"/api/sheets/{sid}/summary").json()
        models = summary["result"]["models"]
        assert summary["schema_version"] == SCHEMA_VERSION
        assert models["column:good"]["n"] == 30 and models["column:good"]["ci95"] is not None
        assert summary["result"]["comparisons"][0]["sentence"]

        task = client.post(f"/api/sheets/{sid}/votes/next", headers=ok).json()
        assert "column:" not in str(task)  # blind
        cast = client.post(f"/api/votes/{task['vote_id']}", json={"verdict": "left"}, headers=ok)
        assert {cast.json()["left_model"], cast.json()["right_model"]} == {
            "column:good",
            "column:bad",
        }
        twice = client.post(f"/api/votes/{task['vote_id']}", json={"verdict": "left"}, headers=ok)
        assert twice.status_code == 400

        lines = client.get(f"/sheets/{sid}/export.jsonl").text.splitlines()
        assert len(lines) == 60 and '"schema_version": 1' in lines[0]
        _report_checks(client, sid, ok)
        _column_settings_checks(client, tmp_path, ok)


def _column_settings_checks(client: httpx.Client, tmp_path: Path, ok: dict[str, str]) -> None:
    """A model column with its own template and sampling; the others keep the sheet's."""
    body = _csv(tmp_path / "own.csv", ROWS[:4])
    sid = client.post("/api/sheets?filename=own.csv", content=body, headers=ok).json()["id"]
    own = {"template": "Q: {question}?", "max_tokens": 5}
    for column in [{"kind": "model", "spec": "column:good", "settings": own},
                   {"kind": "model", "spec": "column:bad"}]:  # fmt: skip
        assert client.post(f"/api/sheets/{sid}/columns", json=column, headers=ok).status_code == 200
        _wait(client, sid)
    bad = {"kind": "model", "spec": "column:answer", "settings": {"template": "{nope}"}}
    refused = client.post(f"/api/sheets/{sid}/columns", json=bad, headers=ok)
    assert refused.status_code == 400 and "nope" in refused.json()["error"]
    # saving the sheet's settings (the form has no per-column fields) keeps the column's own
    client.post(f"/api/sheets/{sid}/settings", json={"max_tokens": 7}, headers=ok)
    sheet = client.get(f"/api/sheets/{sid}").json()
    assert sheet["columns"][0]["settings"] == {**own, "temperature": None}
    assert sheet["columns"][1]["settings"] is None
    run_id = sheet["run_id"]
    with sqlite3.connect(tmp_path / "llmpick.db") as con:
        asked = dict(con.execute(
            "SELECT c.model || ' ' || c.row_id, g.messages || ' ' || g.params FROM cells c"
            " JOIN generations g ON g.cache_key = c.generation_key WHERE c.run_id = ?",
            (run_id,)).fetchall())  # fmt: skip
    assert len(asked) == 8
    # the judge form: a rubric with commas and a line break, and the model that grades
    rubric = "Is it correct, brief=short?\nAnswer 1-10."
    judge = {"kind": "scorer", "spec": "judge:rubric=" + json.dumps(rubric),
             "judge_model": "column:good"}  # fmt: skip
    added = client.post(f"/api/sheets/{sid}/columns", json=judge, headers=ok).json()
    assert added["settings"]["judge_model"] == "column:good"
    from llmpick.evaluate.scoring import parse_scorers

    assert parse_scorers([added["columns"][-1]["spec"]])[0].args == {"rubric": rubric}
    client.post(f"/api/sheets/{sid}/stop", headers=ok)
    assert '"content":"Q: q1?"' in asked["column:good 1"]
    assert '"max_tokens":5,' in asked["column:good 1"]
    assert '"content":"q1"' in asked["column:bad 1"] and '"max_tokens":64' in asked["column:bad 1"]


def _report_checks(client: httpx.Client, sid: str, ok: dict[str, str]) -> None:
    """The sheet's report: one self-contained HTML file, Markdown and JSON of the same state."""
    doc = client.get(f"/sheets/{sid}/report.json")
    report = doc.json()
    assert report["schema_version"] == SCHEMA_VERSION and report["sheet"]["id"] == sid
    assert report["summary"]["models"]["column:good"]["n"] == 30
    assert report["human_ranking"]["votes"] == 1
    exported = list(csv.DictReader(io.StringIO(client.get(f"/sheets/{sid}/export.csv").text)))
    assert [(r["row_id"], r["column:bad"]) for r in report["table"]] == [
        (r["row_id"], r["column:bad"]) for r in exported
    ]  # the same table as the CSV export
    sentence = report["summary"]["comparisons"][0]["sentence"]
    page = client.get(f"/sheets/{sid}/report.html")
    assert page.headers["content-type"].startswith("text/html")
    assert "sandbox" in page.headers["content-security-policy"]
    html = page.text
    assert "<script" not in html and "<link" not in html and "src=" not in html  # self-contained
    assert "column:good" in html and "[" in html and html.count("<tr>") >= 2 + 30
    assert sentence in html.replace("&#39;", "'") and "Human ranking" in html
    markdown = client.get(f"/sheets/{sid}/report.md").text
    assert "| model | mean | 95% interval |" in markdown and sentence in markdown
    assert markdown.count("\n| q") == 0 and "| 17 | q17 |" in markdown
    assert client.get(f"/sheets/{sid}/report.pdf").status_code == 404
    assert client.post("/api/sheets/from-run/nope", headers=ok).status_code == 400


def test_votes_rank_and_agree_with_the_judge(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    wb = WorkbenchStore(store)
    sid = wb.create_sheet("d", [{"prompt": f"p{i}"} for i in range(8)], SheetSettings())
    rid = store.create_run(fingerprint="f", dataset=f"workbench:{sid}", dataset_sha256="x",
                           models=[{"name": "a"}, {"name": "b"}], scorers=[], params={},
                           repeats=1, judge=None)  # fmt: skip
    from llmpick.store import GenerationRecord, RunRow

    store.add_rows(rid, [RunRow(row_id=str(i), row_index=i, category=None, expected=None,
                                messages=[{"role": "user", "content": f"p{i}"}], data={})
                         for i in range(8)])  # fmt: skip
    for model in ("a", "b"):
        for i in range(8):
            key = f"{model}{i}"
            store.put_cell(run_id=rid, model=model, row_id=str(i), repeat=0, cache_key=key,
                           row_sha256="r", cached=False, generation=GenerationRecord(
                               cache_key=key, identity_key=model, identity={}, messages=[],
                               params={}, repeat=0, output=f"{model} says {i}",
                               prompt_tokens=1, completion_tokens=1, time_to_first_token_s=0.1,
                               latency_s=0.2, finish_reason="stop"))  # fmt: skip
    wb.add_column(sid, "model", "a")
    wb.add_column(sid, "model", "b")
    sheet = wb.get_sheet(sid)
    rng = random.Random(0)
    judged = []
    for i in range(8):
        task = next_vote(wb, sheet, "ann", rng)
        assert task is not None and " says " in task.left and "a says" in task.left + task.right
        left_is_a = task.left.startswith("a says")
        verdict = "left" if left_is_a else "right"  # ann always prefers a
        result = cast_vote(wb, task.vote_id, verdict, "ann")
        row = task.left.split()[-1]
        judged.append({"row_id": row, "a": "a", "b": "b", "winner": "a" if i < 6 else None})
        assert result.left_model == ("a" if left_is_a else "b")
    wb.set_pairwise(sid, judged)
    ranking = human_ranking(wb, sheet)
    assert ranking.votes == 8 and ranking.ranking == ["a", "b"]
    assert ranking.strengths["a"] > 0 > ranking.strengths["b"]
    assert ranking.ci95["a"] is not None
    agreement = ranking.judge_agreement
    assert agreement is not None and agreement.n == 8 and agreement.agreement == 0.75
    with pytest.raises(Exception, match="no such vote"):
        cast_vote(wb, "nope", "left", "ann")
    page = grid_page(wb, sheet, 0, 3, GridFilter(search="says 7"))
    assert page.total_rows == 1 and page.rows[0].cells[1].output == "b says 7"
    store.close()


def _cells(db: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(db) as con:
        return {
            r[0]: (r[1], r[2])
            for r in con.execute(
                "SELECT row_id, created_at, generation_key FROM cells WHERE generation_key"
                " IS NOT NULL"
            )
        }


@pytest.mark.slow
@pytest.mark.network
def test_killed_server_resumes_without_recomputing(tmp_path: Path) -> None:
    db = tmp_path / "llmpick.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rows = [{"prompt": f"Count from {i} to {i + 5}."} for i in range(12)]
    body = _csv(tmp_path / "count.csv", rows)
    process = start_ui(db, port, tmp_path)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            client.get("/")
            ok = {"x-csrf-token": client.cookies["llmpick_csrf"]}
            sid = client.post("/api/sheets?filename=count.csv", content=body, headers=ok).json()[
                "id"
            ]
            client.post(f"/api/sheets/{sid}/settings", json={"max_tokens": 8}, headers=ok)
            column = {"kind": "model", "spec": "smollm2-135m-instruct"}
            client.post(f"/api/sheets/{sid}/columns", json=column, headers=ok)
            deadline = time.monotonic() + 120
            while client.get(f"/api/sheets/{sid}/progress").json()["done"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            stopped = client.post(f"/api/sheets/{sid}/stop", headers=ok).json()
            assert stopped["state"] == "stopped" and stopped["done"] < 12
            client.post(f"/api/sheets/{sid}/run", headers=ok)  # resume in the same server
            while client.get(f"/api/sheets/{sid}/progress").json()["done"] < stopped["done"] + 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            run_id = client.get(f"/api/sheets/{sid}").json()["run_id"]
    finally:
        stop_ui(process, hard=True)  # kill -9 mid-run
    before = _cells(db)
    assert 4 <= len(before) < 12
    process = start_ui(db, port, tmp_path)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            client.get("/")
            ok = {"x-csrf-token": client.cookies["llmpick_csrf"]}
            progress = client.get(f"/api/sheets/{sid}/progress").json()
            assert progress["state"] == "stopped" and progress["done"] == len(before)
            client.post(f"/api/sheets/{sid}/run", headers=ok)
            done = _wait(client, sid, timeout_s=180)
            assert done["state"] == "finished" and done["run_id"] == run_id
    finally:
        stop_ui(process)
    after = _cells(db)
    assert len(after) == 12
    assert all(after[row] == before[row] for row in before)  # finished cells untouched
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM generations").fetchone()[0] == 12
        assert con.execute("SELECT count(DISTINCT id) FROM runs").fetchone()[0] == 1


@pytest.mark.network
def test_mounts_under_a_prefix_on_another_app(tmp_path: Path) -> None:
    """How ``llmpick serve --ui`` mounts it: the gateway's app, the workbench under /ui."""
    import threading

    import uvicorn
    from fastapi import FastAPI

    from llmpick.context import Context
    from llmpick.ui import Workbench, mount_workbench

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    mount_workbench(app, Workbench(Context(), tmp_path / "llmpick.db", prefix="/ui"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/health").json() == {"status": "ok"}
            page = client.get("/ui/")
            assert page.status_code == 200 and 'href="/ui/static/workbench.css"' in page.text
            assert client.get("/ui/static/workbench.js").status_code == 200
            assert client.get("/ui/static/..%2Fapp.py").status_code == 404
            token = {"x-csrf-token": client.cookies["llmpick_csrf"]}
            made = client.post("/ui/api/sheets?filename=a.jsonl", content=b'{"prompt": "hi"}\n',
                               headers=token)  # fmt: skip
            assert made.status_code == 200 and made.json()["n_rows"] == 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.network
def test_with_keys_every_route_needs_a_login(tmp_path: Path) -> None:
    """``key_check`` is the seam the gateway's keys plug into (a dict stands in for them)."""
    import threading

    import uvicorn

    from llmpick.context import Context
    from llmpick.ui import create_ui_app

    keys = {"sk-good": "ann"}
    app = create_ui_app(Context(), tmp_path / "llmpick.db", key_check=keys.get)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/").headers["location"] == "/login"
            assert client.get("/api/sheets/x").status_code == 401
            assert client.get("/login").status_code == 200
            token = {"x-csrf-token": client.cookies["llmpick_csrf"]}
            assert client.post("/api/login", content=b"sk-bad", headers=token).status_code == 401
            assert (
                client.post("/api/login", content=b"sk-good", headers=token).json()["user"] == "ann"
            )
            assert client.get("/").status_code == 200
            bearer = httpx.get(
                f"http://127.0.0.1:{port}/", headers={"authorization": "Bearer sk-good"}
            )
            assert bearer.status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_sheet_starts_from_a_dataset_a_run_used(context: Any, tmp_path: Path) -> None:
    from llmpick.backends.base import SamplingParams
    from llmpick.evaluate import run_eval

    data = tmp_path / "d.csv"
    _csv(data, ROWS[:5])
    db = tmp_path / "s.db"
    run = run_eval(context, data, ["column:good"], ["exact"],
                   SamplingParams.model_validate({"max_tokens": 4}), db)  # fmt: skip
    with open_store(db) as store:
        wb = WorkbenchStore(store)
        sid = wb.create_sheet("own", ROWS[:2], SheetSettings())
        assert [d.run_id for d in wb.used_datasets()] == [run.run_id]  # sheets are not listed
        used = wb.used_datasets()[0]
        assert (
            used.n_rows == 5 and used.models == ["column:good"] and used.dataset.endswith("d.csv")
        )
        sheet = wb.get_sheet(wb.sheet_from_run(run.run_id))
        assert sheet.id != sid and sheet.n_rows == 5 and sheet.name.startswith("d.csv (run ")
        rows = wb.dataset(sheet.id).rows
        assert [r.id for r in rows] == ["1", "2", "3", "4", "5"]
        assert rows[0].messages[-1].content == "q1" and rows[2].expected == "no"
        assert rows[1].category == "even" and rows[0].data["good"] == "yes"
