"""Benchmark results in the llmpick SQLite store (tables from migration ``_m004_bench``).

A benchmark is committed in one transaction when it ends (or is interrupted):
the run, each load point's metrics, and each request's raw timestamps, so the
metrics can be recomputed later with :mod:`llmpick.bench.metrics`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from llmpick.bench.results import BenchResult
from llmpick.store import Store

__all__ = ["list_bench_runs", "save_bench"]


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def save_bench(store: Store, result: BenchResult, config: dict[str, Any]) -> str:
    """Commit ``result`` (with the settings in ``config``); return the new run id."""
    run_id = uuid.uuid4().hex[:12]
    document = result.to_json()
    with store.transaction():
        store.db.execute(
            "INSERT INTO bench_runs (id, created_at, model, backend, identity, device, config,"
            " peak_memory_bytes, estimate, interrupted, result) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                datetime.now(UTC).isoformat(timespec="milliseconds"),
                result.model,
                result.backend,
                _dumps(result.identity),
                result.device,
                _dumps(config),
                result.peak_memory_bytes,
                _dumps(document["estimate"]) if result.estimate else None,
                int(result.interrupted),
                _dumps(document),
            ),
        )
        for index, point in enumerate(result.results):
            store.db.execute(
                "INSERT INTO bench_points (run_id, point_index, concurrency, rate, metrics)"
                " VALUES (?,?,?,?,?)",
                (
                    run_id,
                    index,
                    point.point.concurrency,
                    point.point.rate,
                    _dumps(document["results"][index]),
                ),
            )
            store.db.executemany(
                "INSERT INTO bench_requests (run_id, point_index, request_index, start_s,"
                " end_s, chunk_times_s, chunk_tokens, completion_tokens, prompt_tokens, error)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        run_id,
                        index,
                        number,
                        t.start_s,
                        t.end_s,
                        json.dumps(list(t.chunk_times_s)),
                        json.dumps(list(t.chunk_tokens)),
                        t.completion_tokens,
                        t.prompt_tokens,
                        t.error,
                    )
                    for number, t in enumerate(point.timings)
                ],
            )
    return run_id


def list_bench_runs(store: Store, model: str | None = None) -> list[dict[str, Any]]:
    """List stored benchmark documents (``BenchResult.to_json()`` + ``id``), newest first."""
    query = "SELECT id, created_at, result FROM bench_runs"
    args: tuple[Any, ...] = ()
    if model is not None:
        query += " WHERE model = ?"
        args = (model,)
    rows = store.db.execute(query + " ORDER BY created_at DESC", args).fetchall()
    return [{"id": r["id"], "created_at": r["created_at"], **json.loads(r["result"])} for r in rows]
