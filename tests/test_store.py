"""The SQLite store: schema from migrations, WAL, idempotent cells, errors replaced."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llmpick.errors import StoreError
from llmpick.store import SCHEMA_VERSION, GenerationRecord, RunRow, open_store
from llmpick.store.migrations import MIGRATIONS, migrate

EXPECTED_SCHEMA = {
    "runs": [
        "id", "created_at", "finished_at", "status", "fingerprint", "dataset", "dataset_sha256",
        "models", "scorers", "params", "repeats", "judge", "summary", "owner", "shared_with",
    ],
    "generations": [
        "cache_key", "identity_key", "identity", "messages", "params", "repeat", "output",
        "prompt_tokens", "completion_tokens", "time_to_first_token_s", "latency_s",
        "finish_reason", "created_at",
    ],
    "run_rows": ["run_id", "row_id", "row_index", "category", "expected", "messages", "data"],
    "cells": [
        "id", "run_id", "model", "row_id", "repeat", "cache_key", "row_sha256",
        "generation_key", "cached", "cost_usd", "error", "created_at",
    ],
    "scores": [
        "cell_id", "scorer_key", "scorer", "value", "label", "explanation", "created_at",
    ],
    # llmpick bench's tables (migration 4, owned by llmpick.bench)
    "bench_runs": [
        "id", "created_at", "model", "backend", "identity", "device", "config",
        "peak_memory_bytes", "estimate", "interrupted", "result",
    ],
    "bench_points": ["run_id", "point_index", "concurrency", "rate", "metrics"],
    "bench_requests": [
        "run_id", "point_index", "request_index", "start_s", "end_s", "chunk_times_s",
        "chunk_tokens", "completion_tokens", "prompt_tokens", "error",
    ],
    # gateway requests, timing only (migration _m005, owned by llmpick.serve.requestlog)
    "serve_requests": [
        "id", "request_id", "started_at", "endpoint", "key_name", "route", "category", "model",
        "status", "error_type", "stream", "fallback_from", "prompt_tokens", "completion_tokens",
        "time_to_first_token_s", "total_s",
    ],
    # gateway keys and usage (migration _m006, owned by llmpick.serve.keys)
    "api_keys": [
        "id", "name", "key_sha256", "rpm", "tpm", "models", "created_at", "expires_at",
        "revoked_at",
    ],
    "key_usage": ["key_id", "minute", "requests", "prompt_tokens", "completion_tokens"],
    # quantization sweeps (migration _m008, owned by llmpick.quant.store)
    "quant_runs": [
        "id", "created_at", "model", "catalog_id", "source_sha256", "dataset", "dataset_sha256",
        "eval_run_id", "scorer", "kld_threshold", "choice", "result",
    ],
    "quant_variants": [
        "run_id", "variant", "is_reference", "sha256", "size_bytes", "bits_per_weight",
        "kld_mean", "kld_p99", "same_top_token", "delta_ppl", "quality_mean", "quality_diff",
        "quality_p_value", "peak_memory_bytes", "decode_tokens_per_second",
    ],
    # the workbench's tables (_m007_workbench, owned by llmpick.ui)
    "workbench_sheets": [
        "id", "created_at", "name", "records", "mapping", "template", "params", "run_id",
        "pairwise", "owner", "shared_with",
    ],
    "workbench_columns": ["sheet_id", "position", "kind", "spec", "created_at"],
    "workbench_votes": [
        "id", "sheet_id", "run_id", "row_id", "model_left", "model_right", "voter", "shown_at",
        "verdict", "voted_at",
    ],
}  # fmt: skip


def _generation(key: str, output: str = "out") -> GenerationRecord:
    return GenerationRecord(
        cache_key=key,
        identity_key="ident",
        identity={"backend": "column", "model": "x"},
        messages=[{"role": "user", "content": "hi"}],
        params={"max_tokens": 8},
        repeat=0,
        output=output,
        prompt_tokens=3,
        completion_tokens=2,
        time_to_first_token_s=0.01,
        latency_s=0.02,
        finish_reason="stop",
    )


def _run(store, fingerprint: str = "fp") -> str:  # type: ignore[no-untyped-def]
    return store.create_run(
        fingerprint=fingerprint,
        dataset="d.csv",
        dataset_sha256="abc",
        models=[{"name": "m"}],
        scorers=[{"name": "exact", "args": {}}],
        params={"max_tokens": 8},
        repeats=1,
        judge=None,
    )


def test_migrations_produce_the_expected_schema(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        tables = {
            r[0]
            for r in store.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        assert tables == set(EXPECTED_SCHEMA)
        for table, columns in EXPECTED_SCHEMA.items():
            found = [r[1] for r in store.db.execute(f"PRAGMA table_info({table})")]
            assert found == columns, table
        indexes = {
            r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert {"cells_by_cache_key", "runs_by_fingerprint", "quant_runs_by_model"} <= indexes
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        unique = [
            r for r in store.db.execute("PRAGMA index_list(cells)") if r[2] == 1 and r[3] == "u"
        ]
        assert len(unique) == 1
        cols = [r[2] for r in store.db.execute(f"PRAGMA index_info({unique[0][1]})")]
        assert cols == ["run_id", "model", "row_id", "repeat"]


def test_migrations_are_ordered_and_resume_from_any_version(tmp_path: Path) -> None:
    assert len(MIGRATIONS) == SCHEMA_VERSION
    db = sqlite3.connect(tmp_path / "partial.db", isolation_level=None)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    assert migrate(db) == SCHEMA_VERSION
    assert migrate(db) == SCHEMA_VERSION  # idempotent
    db.close()
    with open_store(tmp_path / "partial.db") as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_and_non_sqlite_files_are_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="schema version"):
        open_store(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot use"):
        open_store(junk)
    with pytest.raises(StoreError, match="directory"):
        open_store(tmp_path)


def test_cells_are_unique_and_errors_are_replaced_by_successes(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        run_id = _run(store)
        common = {"run_id": run_id, "model": "m", "row_id": "1", "repeat": 0, "row_sha256": "r"}
        failed = store.put_cell(
            **common, cache_key="k1", generation=None, cached=False, error="boom"
        )
        ok = store.put_cell(**common, cache_key="k1", generation=_generation("k1"), cached=False)
        assert ok == failed
        # a later attempt never replaces a finished cell
        again = store.put_cell(
            **common, cache_key="k1", generation=None, cached=False, error="late failure"
        )
        assert again == ok
        cells = store.get_cells(run_id)
        assert len(cells) == 1
        assert cells[0].error is None and cells[0].output == "out"
        assert store.finished_cells(run_id) == {("m", "1", 0)}
        assert store.cached_keys(["k1", "k2"]) == {"k1"}


def test_scores_rows_runs_and_score_reuse(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        run_id = _run(store)
        store.add_rows(
            run_id,
            [
                RunRow(
                    row_id="1",
                    row_index=0,
                    category="c",
                    expected="x",
                    messages=[{"role": "user", "content": "hi"}],
                    data={"prompt": "hi"},
                )
            ],
        )
        store.add_rows(run_id, [])  # idempotent
        cell = store.put_cell(
            run_id=run_id,
            model="m",
            row_id="1",
            repeat=0,
            cache_key="k",
            row_sha256="r",
            generation=_generation("k"),
            cached=False,
        )
        store.put_score(cell, "exact", {"name": "exact", "args": {}}, 1.0, None, "match")
        store.put_score(cell, "exact", {"name": "exact", "args": {}}, 0.0, None, "replaced")
        assert [s.value for s in store.get_scores(run_id)] == [0.0]
        assert store.find_score("k", "r", "exact") is not None
        assert store.find_score("k", "other-row", "exact") is None
        assert store.get_rows(run_id)[0].data == {"prompt": "hi"}
        assert store.unfinished_run("fp") == run_id
        store.set_run_status(run_id, "finished")
        assert store.unfinished_run("fp") is None
        assert store.get_run(run_id[:6]).status == "finished"
        assert [r.id for r in store.list_runs()] == [run_id]
        with pytest.raises(StoreError, match="no run"):
            store.get_run("zzz")
        store.delete_scores(run_id)
        assert store.get_scores(run_id) == []
