"""Schema of the SQLite store, as small ordered migration functions.

``MIGRATIONS[i]`` takes the schema from version ``i`` to ``i + 1``; the version
lives in ``PRAGMA user_version``. Never edit a released migration: append a
new one. ``tests/test_store.py`` asserts the schema they produce.

Tables:

- ``runs``: one evaluation run (dataset, models, scorers, sampling settings).
- ``run_rows``: the dataset rows of a run, as rendered, so a run can be
  rescored without the original file.
- ``generations``: the cache. One successful generation per cache key
  (backend identity + rendered messages + sampling params + repeat index);
  judge generations live here too.
- ``cells``: one (run, model, row, repeat); points at its generation, or
  carries the error that kept it from having one.
- ``scores``: one score per cell and scorer (name + arguments).
- ``bench_runs``, ``bench_points``, ``bench_requests``: ``llmpick bench`` results,
  down to each request's chunk timestamps (written by ``llmpick.bench.store``).
- ``serve_requests``: one row per gateway request — timing and token counts, never
  its text (written by ``llmpick.serve.requestlog``).
- ``api_keys``, ``key_usage``: the gateway's API keys (a SHA-256 of each key, never
  the key) and per-key usage counters by minute (written by ``llmpick.serve.keys``).
- ``workbench_sheets``, ``workbench_columns``, ``workbench_votes``: the workbench
  (``llmpick ui``): uploaded data and its column mapping, the model/scorer/judge
  columns added in the page, and blind votes (who, when, which pair, order shown).
- ``quant_runs``, ``quant_variants``: ``llmpick quant`` results, one row per
  sweep and per variant (written by ``llmpick.quant.store``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]


def _m001_runs_and_generations(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL DEFAULT 'running',
            fingerprint TEXT NOT NULL,
            dataset TEXT NOT NULL,
            dataset_sha256 TEXT NOT NULL,
            models TEXT NOT NULL,
            scorers TEXT NOT NULL,
            params TEXT NOT NULL,
            repeats INTEGER NOT NULL,
            judge TEXT,
            summary TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE generations (
            cache_key TEXT PRIMARY KEY,
            identity_key TEXT NOT NULL,
            identity TEXT NOT NULL,
            messages TEXT NOT NULL,
            params TEXT NOT NULL,
            repeat INTEGER NOT NULL,
            output TEXT NOT NULL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            time_to_first_token_s REAL,
            latency_s REAL NOT NULL,
            finish_reason TEXT,
            created_at TEXT NOT NULL
        )
        """
    )


def _m002_rows_cells_scores(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE run_rows (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            row_id TEXT NOT NULL,
            row_index INTEGER NOT NULL,
            category TEXT,
            expected TEXT,
            messages TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, row_id)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE cells (
            -- AUTOINCREMENT: ids of deleted cells are never reused, so a stray
            -- score can never attach to another cell
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            row_id TEXT NOT NULL,
            repeat INTEGER NOT NULL,
            cache_key TEXT NOT NULL,
            row_sha256 TEXT NOT NULL,
            generation_key TEXT REFERENCES generations(cache_key),
            cached INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL,
            error TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (run_id, model, row_id, repeat)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE scores (
            cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
            scorer_key TEXT NOT NULL,
            scorer TEXT NOT NULL,
            value REAL,
            label TEXT,
            explanation TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            PRIMARY KEY (cell_id, scorer_key)
        )
        """
    )


def _m003_indexes(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX cells_by_cache_key ON cells (cache_key, row_sha256)")
    db.execute("CREATE INDEX runs_by_fingerprint ON runs (fingerprint, status)")


def _m004_bench(db: sqlite3.Connection) -> None:
    # bench tables (owned by llmpick.bench, see bench/store.py): one row per model
    # benchmarked, per load point, and per request with its raw timestamps, so every
    # metric can be recomputed from what was measured
    db.execute(
        """
        CREATE TABLE bench_runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,
            backend TEXT NOT NULL,
            identity TEXT NOT NULL,
            device TEXT NOT NULL,
            config TEXT NOT NULL,
            peak_memory_bytes INTEGER,
            estimate TEXT,
            interrupted INTEGER NOT NULL DEFAULT 0,
            result TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE bench_points (
            run_id TEXT NOT NULL REFERENCES bench_runs(id) ON DELETE CASCADE,
            point_index INTEGER NOT NULL,
            concurrency INTEGER,
            rate REAL,
            metrics TEXT NOT NULL,
            PRIMARY KEY (run_id, point_index)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE bench_requests (
            run_id TEXT NOT NULL REFERENCES bench_runs(id) ON DELETE CASCADE,
            point_index INTEGER NOT NULL,
            request_index INTEGER NOT NULL,
            start_s REAL NOT NULL,
            end_s REAL NOT NULL,
            chunk_times_s TEXT NOT NULL,
            chunk_tokens TEXT NOT NULL,
            completion_tokens INTEGER,
            prompt_tokens INTEGER,
            error TEXT,
            PRIMARY KEY (run_id, point_index, request_index)
        )
        """
    )


def _m005_serve_requests(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE serve_requests (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            started_at REAL NOT NULL,
            endpoint TEXT NOT NULL,
            key_name TEXT,
            route TEXT,
            category TEXT,
            model TEXT,
            status INTEGER NOT NULL,
            error_type TEXT,
            stream INTEGER NOT NULL,
            fallback_from TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            time_to_first_token_s REAL,
            total_s REAL
        )
        """
    )
    db.execute("CREATE INDEX serve_requests_time ON serve_requests (started_at, model)")


def _m006_keys_and_usage(db: sqlite3.Connection) -> None:
    # gateway API keys (owned by llmpick.serve.keys): only the SHA-256 of the secret
    db.execute(
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            key_sha256 TEXT NOT NULL,
            rpm INTEGER,
            tpm INTEGER,
            models TEXT,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            revoked_at TEXT
        )
        """
    )
    # usage by key and minute (UTC, 'YYYY-MM-DDTHH:MM'); the gateway adds to it per request
    db.execute(
        """
        CREATE TABLE key_usage (
            key_id TEXT NOT NULL,
            minute TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (key_id, minute)
        )
        """
    )


def _m007_workbench(db: sqlite3.Connection) -> None:
    # a sheet keeps its uploaded records (so it needs no file) and the run that
    # holds its cells; columns are what the page added, in order
    db.execute(
        """
        CREATE TABLE workbench_sheets (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            name TEXT NOT NULL,
            records TEXT NOT NULL,
            mapping TEXT NOT NULL,
            template TEXT,
            params TEXT NOT NULL,
            run_id TEXT REFERENCES runs(id) ON DELETE SET NULL,
            pairwise TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE workbench_columns (
            sheet_id TEXT NOT NULL REFERENCES workbench_sheets(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            kind TEXT NOT NULL,
            spec TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (sheet_id, position),
            UNIQUE (sheet_id, kind, spec)
        )
        """
    )
    # a vote row is written when the pair is shown (order included) and
    # completed when the person answers; verdict: left, right, tie, both_bad
    db.execute(
        """
        CREATE TABLE workbench_votes (
            id TEXT PRIMARY KEY,
            sheet_id TEXT NOT NULL REFERENCES workbench_sheets(id) ON DELETE CASCADE,
            run_id TEXT NOT NULL,
            row_id TEXT NOT NULL,
            model_left TEXT NOT NULL,
            model_right TEXT NOT NULL,
            voter TEXT NOT NULL,
            shown_at TEXT NOT NULL,
            verdict TEXT,
            voted_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX workbench_votes_by_sheet ON workbench_votes (sheet_id, verdict)")


def _m008_quant(db: sqlite3.Connection) -> None:
    # quant tables (owned by llmpick.quant, see quant/store.py); IF NOT EXISTS because
    # the migrations of other branches are numbered in before this one when they merge
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS quant_runs (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,
            catalog_id TEXT,
            source_sha256 TEXT NOT NULL,
            dataset TEXT NOT NULL,
            dataset_sha256 TEXT NOT NULL,
            eval_run_id TEXT,
            scorer TEXT,
            kld_threshold REAL NOT NULL,
            choice TEXT,
            result TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS quant_variants (
            run_id TEXT NOT NULL REFERENCES quant_runs(id) ON DELETE CASCADE,
            variant TEXT NOT NULL,
            is_reference INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            bits_per_weight REAL NOT NULL,
            kld_mean REAL,
            kld_p99 REAL,
            same_top_token REAL,
            delta_ppl REAL,
            quality_mean REAL,
            quality_diff REAL,
            quality_p_value REAL,
            peak_memory_bytes INTEGER,
            decode_tokens_per_second REAL,
            PRIMARY KEY (run_id, variant)
        )
        """
    )
    db.execute("CREATE INDEX IF NOT EXISTS quant_runs_by_model ON quant_runs (catalog_id, model)")


def _m009_owners(db: sqlite3.Connection) -> None:
    # who may see a sheet or run in the workbench: the key that made it ('local'
    # without keys, and for runs made by the CLI), plus the names it is shared with
    db.execute("ALTER TABLE workbench_sheets ADD COLUMN owner TEXT NOT NULL DEFAULT 'local'")
    db.execute("ALTER TABLE workbench_sheets ADD COLUMN shared_with TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT 'local'")
    db.execute("ALTER TABLE runs ADD COLUMN shared_with TEXT NOT NULL DEFAULT '[]'")


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = [
    _m001_runs_and_generations,
    _m002_rows_cells_scores,
    _m003_indexes,
    _m004_bench,
    _m005_serve_requests,
    _m006_keys_and_usage,
    _m007_workbench,
    _m008_quant,
    _m009_owners,
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Apply every migration newer than the file's ``user_version``; return the new version.

    Each migration runs in its own transaction together with the version bump,
    so an interrupted upgrade leaves the file at a consistent version.
    """
    current = int(db.execute("PRAGMA user_version").fetchone()[0])
    for version in range(current, SCHEMA_VERSION):
        with db:
            db.execute("BEGIN IMMEDIATE")
            # re-read inside the lock: another process may have migrated meanwhile
            if int(db.execute("PRAGMA user_version").fetchone()[0]) > version:
                continue
            MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version = {version + 1}")
    return int(db.execute("PRAGMA user_version").fetchone()[0])
