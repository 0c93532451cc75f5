"""How fast the workbench opens a large run: 10,000 rows x 4 models, beside 10 rows x 4.

Both sheets are written straight into one store (the runner's tables, the same
rows/cells/generations/scores a real run leaves), then a real ``llmpick ui``
server on 127.0.0.1 is asked, alternately for the small and the large sheet:

- ``page``: the sheet's HTML (first 50 rows, server-rendered);
- ``grid``: a page of 50 rows from the middle (``offset=5000``), as the pager asks;
- ``summary``: the summary strip (means with bootstrap intervals, comparisons),
  stored with the run when it finished (as ``arun_eval`` does); the one-off
  ``summarize()`` at the end of the run is timed and printed too;
- ``open``: page + progress + first grid page + summary, what the browser loads;
- ``report``: the sheet's self-contained HTML report (every row; an export, not
  part of ``open``).

Times are medians of ``--repeats`` rounds; ratios large/small are measured side
by side in the same rounds, so load from other processes hits both alike.

Run:  python benchmarks/workbench_open.py [--rows 10000] [--models 4] [--repeats 5]
Target: ``open`` of the large sheet under 2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import free_port
from llmpick.evaluate.results import summarize
from llmpick.store import open_store
from llmpick.ui.models import SheetSettings
from llmpick.ui.sheets import WorkbenchStore
from ui_server import start_ui, stop_ui

NOW = "2026-01-01T00:00:00.000+00:00"
#: seconds summarize() took when the run ended (once per run, not per page open)
SUMMARIZE_S: dict[int, float] = {}


def build_sheet(db: Path, n_rows: int, n_models: int) -> str:
    """A sheet with a finished run of ``n_rows`` x ``n_models`` cells, each scored."""
    store = open_store(db)
    wb = WorkbenchStore(store)
    records = [
        {"id": str(i), "prompt": f"Question {i}: what is {i} + {i}?", "expected": str(2 * i),
         "category": f"c{i % 5}"}
        for i in range(n_rows)
    ]  # fmt: skip
    sheet_id = wb.create_sheet(f"bench-{n_rows}", records, SheetSettings())
    models = [f"model-{m}" for m in range(n_models)]
    for name in models:
        wb.add_column(sheet_id, "model", name)
    wb.add_column(sheet_id, "scorer", "contains")
    run_id = uuid.uuid4().hex[:12]
    db_ = store.db
    with store.transaction():
        db_.execute(
            "INSERT INTO runs (id, created_at, status, fingerprint, dataset, dataset_sha256,"
            " models, scorers, params, repeats, judge) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, NOW, "finished", run_id, f"workbench:{sheet_id}", "x",
             json.dumps([{"name": m} for m in models]),
             json.dumps([{"name": "contains", "args": {}}]), "{}", 1, None),
        )  # fmt: skip
        db_.executemany(
            "INSERT INTO run_rows VALUES (?,?,?,?,?,?,?)",
            [(run_id, r["id"], i, r["category"], r["expected"],
              json.dumps([{"role": "user", "content": r["prompt"]}]), json.dumps(r))
             for i, r in enumerate(records)],
        )  # fmt: skip
        for m, name in enumerate(models):
            db_.executemany(
                "INSERT INTO generations VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(f"{run_id}-{name}-{i}", name, "{}", "[]", "{}", 0,
                  f"The answer is {2 * i + (i % (m + 2))}.", 10, 6, 0.05, 0.2 + m / 10, "stop",
                  NOW) for i in range(n_rows)],
            )  # fmt: skip
            db_.executemany(
                "INSERT INTO cells (run_id, model, row_id, repeat, cache_key, row_sha256,"
                " generation_key, cached, cost_usd, error, created_at)"
                " VALUES (?,?,?,0,?,?,?,0,NULL,NULL,?)",
                [(run_id, name, str(i), f"{run_id}-{name}-{i}", "r", f"{run_id}-{name}-{i}", NOW)
                 for i in range(n_rows)],
            )  # fmt: skip
        db_.execute(
            'INSERT INTO scores SELECT c.id, \'contains\', \'{"name":"contains","args":{}}\','
            " CASE WHEN instr(g.output, r.expected) > 0 THEN 1.0 ELSE 0.0 END, NULL, '', ?"
            " FROM cells c JOIN generations g ON g.cache_key = c.generation_key"
            " JOIN run_rows r ON r.run_id = c.run_id AND r.row_id = c.row_id WHERE c.run_id = ?",
            (NOW, run_id),
        )
    # as arun_eval does when a run ends: the summary is stored with the run
    started = time.perf_counter()
    store.set_run_summary(run_id, summarize(store, run_id).model_dump(mode="json"))
    SUMMARIZE_S[n_rows] = time.perf_counter() - started
    store.close()
    return sheet_id


def timed(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed


def measure(client: httpx.Client, sheet: str) -> dict[str, float]:
    page = timed(client, f"/sheets/{sheet}")
    progress = timed(client, f"/api/sheets/{sheet}/progress")
    first = timed(client, f"/api/sheets/{sheet}/grid?offset=0&limit=50")
    summary = timed(client, f"/api/sheets/{sheet}/summary")
    middle = timed(client, f"/api/sheets/{sheet}/grid?offset=5000&limit=50")
    return {
        "page": page,
        "grid": middle,
        "summary": summary,
        "open": page + progress + first + summary,
        "report": timed(client, f"/sheets/{sheet}/report.html"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "llmpick.db"
        started = time.perf_counter()
        small = build_sheet(db, 10, args.models)
        large = build_sheet(db, args.rows, args.models)
        print(f"built {args.rows} x {args.models} cells in {time.perf_counter() - started:.1f} s")
        port = free_port()
        process = start_ui(db, port, Path(tmp))
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                measure(client, small)  # warm up (imports, first queries)
                rounds: dict[str, list[dict[str, float]]] = {"small": [], "large": []}
                for _ in range(args.repeats):
                    rounds["small"].append(measure(client, small))
                    rounds["large"].append(measure(client, large))
        finally:
            stop_ui(process)
    print(f"{'step':<8} {'10 rows (s)':>12} {args.rows:>7} rows (s) {'ratio':>7}")
    for step in ("page", "grid", "summary", "open", "report"):
        s = statistics.median(r[step] for r in rounds["small"])
        big = statistics.median(r[step] for r in rounds["large"])
        print(f"{step:<8} {s:>12.3f} {big:>16.3f} {big / s:>7.1f}")
    print(
        f"summarize() when the run ended (stored, not redone on open): "
        f"{SUMMARIZE_S[10]:.3f} s vs {SUMMARIZE_S[args.rows]:.3f} s"
    )
    worst = max(r["open"] for r in rounds["large"])
    verdict = "PASS" if statistics.median(r["open"] for r in rounds["large"]) < 2 else "FAIL"
    print(
        f"open {args.rows} x {args.models}: median under 2 s: {verdict} (worst round {worst:.3f} s)"
    )


if __name__ == "__main__":
    main()
