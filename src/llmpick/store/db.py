"""The SQLite store: one file, WAL mode, every cell committed when it finishes.

Open it with :func:`open_store`; everything the evaluate stage measures goes
through the methods of :class:`Store`. One connection is used from one thread
(the event loop's); WAL lets ``llmpick results`` read while a run writes.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llmpick.errors import StoreError
from llmpick.store.migrations import SCHEMA_VERSION, migrate

__all__ = [
    "DEFAULT_DB",
    "CellRecord",
    "GenerationRecord",
    "RunRecord",
    "RunRow",
    "ScoreRecord",
    "Store",
    "open_store",
]

#: Where ``llmpick eval`` keeps its results unless ``--db`` says otherwise.
DEFAULT_DB = Path("llmpick.db")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class RunRecord(BaseModel):
    """One evaluation run as stored."""

    id: str
    created_at: str
    finished_at: str | None
    status: str
    fingerprint: str
    dataset: str
    dataset_sha256: str
    models: list[dict[str, Any]]
    scorers: list[dict[str, Any]]
    params: dict[str, Any]
    repeats: int
    judge: str | None
    summary: dict[str, Any] | None


class RunRow(BaseModel):
    """A dataset row of a run, with the messages it was rendered to."""

    row_id: str
    row_index: int
    category: str | None
    expected: str | None
    messages: list[dict[str, Any]]
    data: dict[str, Any]


class GenerationRecord(BaseModel):
    """A cached successful generation."""

    cache_key: str
    identity_key: str
    identity: dict[str, Any]
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    repeat: int
    output: str
    prompt_tokens: int | None
    completion_tokens: int | None
    time_to_first_token_s: float | None
    latency_s: float
    finish_reason: str | None


class CellRecord(BaseModel):
    """A cell of a run joined with its generation (if it has one)."""

    id: int
    run_id: str
    model: str
    row_id: str
    repeat: int
    cache_key: str
    row_sha256: str
    cached: bool
    cost_usd: float | None
    error: str | None
    output: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    time_to_first_token_s: float | None
    latency_s: float | None


class ScoreRecord(BaseModel):
    """A stored score of one cell by one scorer."""

    cell_id: int
    scorer_key: str
    scorer: dict[str, Any]
    value: float | None
    label: str | None
    explanation: str


_CELL_SELECT = """
    SELECT c.id, c.run_id, c.model, c.row_id, c.repeat, c.cache_key, c.row_sha256,
           c.cached, c.cost_usd, c.error, g.output, g.prompt_tokens, g.completion_tokens,
           g.time_to_first_token_s, g.latency_s
    FROM cells c LEFT JOIN generations g ON g.cache_key = c.generation_key
"""


class Store:
    """Typed access to the llmpick SQLite file."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.db = connection
        self.path = path

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (checkpointing the WAL where possible)."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes; committed on success, rolled back on error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- runs ------------------------------------------------------------------------

    def create_run(
        self,
        *,
        fingerprint: str,
        dataset: str,
        dataset_sha256: str,
        models: list[dict[str, Any]],
        scorers: list[dict[str, Any]],
        params: dict[str, Any],
        repeats: int,
        judge: str | None,
    ) -> str:
        """Insert a new run in status ``running`` and return its id."""
        run_id = uuid.uuid4().hex[:12]
        self.db.execute(
            "INSERT INTO runs (id, created_at, status, fingerprint, dataset, dataset_sha256,"
            " models, scorers, params, repeats, judge) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                _now(),
                "running",
                fingerprint,
                dataset,
                dataset_sha256,
                _dumps(models),
                _dumps(scorers),
                _dumps(params),
                repeats,
                judge,
            ),
        )
        return run_id

    def unfinished_run(self, fingerprint: str) -> str | None:
        """Return the newest unfinished run of the same command (same fingerprint), if any."""
        row = self.db.execute(
            "SELECT id FROM runs WHERE fingerprint = ? AND status != 'finished'"
            " ORDER BY created_at DESC LIMIT 1",
            (fingerprint,),
        ).fetchone()
        return None if row is None else str(row[0])

    def set_run_status(self, run_id: str, status: str) -> None:
        """Mark a run ``running``, ``interrupted`` or ``finished``."""
        finished = _now() if status == "finished" else None
        self.db.execute(
            "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, finished, run_id)
        )

    def set_run_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        """Store the run's result summary (the JSON of ``llmpick eval``)."""
        self.db.execute("UPDATE runs SET summary = ? WHERE id = ?", (_dumps(summary), run_id))

    def set_run_scorers(
        self, run_id: str, scorers: list[dict[str, Any]], judge: str | None
    ) -> None:
        """Replace the scorers (and judge) recorded for a run (after a rescore)."""
        self.db.execute(
            "UPDATE runs SET scorers = ?, judge = ? WHERE id = ?",
            (_dumps(scorers), judge, run_id),
        )

    def get_run(self, run_id: str) -> RunRecord:
        """Return the run called ``run_id`` (a unique prefix is enough)."""
        rows = self.db.execute(
            "SELECT * FROM runs WHERE id LIKE ? ORDER BY created_at DESC LIMIT 2",
            (run_id.replace("%", "").replace("_", "") + "%",),
        ).fetchall()
        if not rows or not run_id:
            raise StoreError(
                f"no run '{run_id}' in {self.path}", "list runs with: llmpick runs --db PATH"
            )
        if len(rows) > 1 and rows[0]["id"] != run_id:
            raise StoreError(f"run id prefix '{run_id}' is ambiguous", "give more characters")
        return self._run(rows[0])

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """Return the newest runs first."""
        rows = self.db.execute(
            "SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [self._run(r) for r in rows]

    @staticmethod
    def _run(row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=row["id"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            status=row["status"],
            fingerprint=row["fingerprint"],
            dataset=row["dataset"],
            dataset_sha256=row["dataset_sha256"],
            models=json.loads(row["models"]),
            scorers=json.loads(row["scorers"]),
            params=json.loads(row["params"]),
            repeats=row["repeats"],
            judge=row["judge"],
            summary=json.loads(row["summary"]) if row["summary"] else None,
        )

    # -- rows ------------------------------------------------------------------------

    def add_rows(self, run_id: str, rows: list[RunRow]) -> None:
        """Record the run's rendered rows (idempotent)."""
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO run_rows (run_id, row_id, row_index, category, expected,"
                " messages, data) VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        run_id,
                        r.row_id,
                        r.row_index,
                        r.category,
                        r.expected,
                        _dumps(r.messages),
                        json.dumps(r.data, ensure_ascii=False, default=str),
                    )
                    for r in rows
                ],
            )

    def get_rows(self, run_id: str) -> list[RunRow]:
        """Return the run's rows in dataset order."""
        rows = self.db.execute(
            "SELECT * FROM run_rows WHERE run_id = ? ORDER BY row_index", (run_id,)
        ).fetchall()
        return [
            RunRow(
                row_id=r["row_id"],
                row_index=r["row_index"],
                category=r["category"],
                expected=r["expected"],
                messages=json.loads(r["messages"]),
                data=json.loads(r["data"]),
            )
            for r in rows
        ]

    # -- generations (the cache) -----------------------------------------------------

    def get_generation(self, cache_key: str) -> GenerationRecord | None:
        """Return the cached generation for ``cache_key``, if one finished before."""
        r = self.db.execute(
            "SELECT * FROM generations WHERE cache_key = ?", (cache_key,)
        ).fetchone()
        if r is None:
            return None
        return GenerationRecord(
            cache_key=r["cache_key"],
            identity_key=r["identity_key"],
            identity=json.loads(r["identity"]),
            messages=json.loads(r["messages"]),
            params=json.loads(r["params"]),
            repeat=r["repeat"],
            output=r["output"],
            prompt_tokens=r["prompt_tokens"],
            completion_tokens=r["completion_tokens"],
            time_to_first_token_s=r["time_to_first_token_s"],
            latency_s=r["latency_s"],
            finish_reason=r["finish_reason"],
        )

    def cached_keys(self, cache_keys: list[str]) -> set[str]:
        """Which of ``cache_keys`` have a cached generation."""
        found: set[str] = set()
        for start in range(0, len(cache_keys), 500):
            chunk = cache_keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self.db.execute(
                    f"SELECT cache_key FROM generations WHERE cache_key IN ({marks})", chunk
                )
            )
        return found

    def _insert_generation(self, g: GenerationRecord) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO generations (cache_key, identity_key, identity, messages,"
            " params, repeat, output, prompt_tokens, completion_tokens, time_to_first_token_s,"
            " latency_s, finish_reason, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                g.cache_key,
                g.identity_key,
                _dumps(g.identity),
                _dumps(g.messages),
                _dumps(g.params),
                g.repeat,
                g.output,
                g.prompt_tokens,
                g.completion_tokens,
                g.time_to_first_token_s,
                g.latency_s,
                g.finish_reason,
                _now(),
            ),
        )

    def put_generation(self, g: GenerationRecord) -> None:
        """Cache a generation on its own (judge calls); committed at once."""
        with self.transaction():
            self._insert_generation(g)

    # -- cells -----------------------------------------------------------------------

    def finished_cells(self, run_id: str) -> set[tuple[str, str, int]]:
        """(model, row_id, repeat) of the run's cells that have a generation."""
        return {
            (r[0], r[1], r[2])
            for r in self.db.execute(
                "SELECT model, row_id, repeat FROM cells"
                " WHERE run_id = ? AND generation_key IS NOT NULL",
                (run_id,),
            )
        }

    def put_cell(
        self,
        *,
        run_id: str,
        model: str,
        row_id: str,
        repeat: int,
        cache_key: str,
        row_sha256: str,
        generation: GenerationRecord | None,
        cached: bool,
        cost_usd: float | None = None,
        error: str | None = None,
        generation_key: str | None = None,
    ) -> int:
        """Commit a finished cell (and its new generation) in one transaction; return its id.

        ``generation_key`` links a generation already cached instead. A cell
        that already has a generation is never replaced; a cell that failed
        before is replaced by the new attempt.
        """
        if generation is not None:
            generation_key = generation.cache_key
        with self.transaction():
            if generation is not None:
                self._insert_generation(generation)
            self.db.execute(
                "INSERT INTO cells (run_id, model, row_id, repeat, cache_key, row_sha256,"
                " generation_key, cached, cost_usd, error, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (run_id, model, row_id, repeat) DO UPDATE SET"
                " cache_key = excluded.cache_key, row_sha256 = excluded.row_sha256,"
                " generation_key = excluded.generation_key, cached = excluded.cached,"
                " cost_usd = excluded.cost_usd, error = excluded.error,"
                " created_at = excluded.created_at"
                " WHERE cells.generation_key IS NULL",
                (
                    run_id,
                    model,
                    row_id,
                    repeat,
                    cache_key,
                    row_sha256,
                    generation_key,
                    int(cached),
                    cost_usd,
                    error,
                    _now(),
                ),
            )
            row = self.db.execute(
                "SELECT id FROM cells WHERE run_id = ? AND model = ? AND row_id = ? AND repeat = ?",
                (run_id, model, row_id, repeat),
            ).fetchone()
        return int(row[0])

    def get_cells(self, run_id: str) -> list[CellRecord]:
        """Every cell of a run, ordered by model, row and repeat."""
        rows = self.db.execute(
            _CELL_SELECT + " WHERE c.run_id = ? ORDER BY c.id", (run_id,)
        ).fetchall()
        return [
            CellRecord(
                id=r["id"],
                run_id=r["run_id"],
                model=r["model"],
                row_id=r["row_id"],
                repeat=r["repeat"],
                cache_key=r["cache_key"],
                row_sha256=r["row_sha256"],
                cached=bool(r["cached"]),
                cost_usd=r["cost_usd"],
                error=r["error"],
                output=r["output"],
                prompt_tokens=r["prompt_tokens"],
                completion_tokens=r["completion_tokens"],
                time_to_first_token_s=r["time_to_first_token_s"],
                latency_s=r["latency_s"],
            )
            for r in rows
        ]

    # -- scores ----------------------------------------------------------------------

    def put_score(
        self,
        cell_id: int,
        scorer_key: str,
        scorer: dict[str, Any],
        value: float | None,
        label: str | None,
        explanation: str,
    ) -> None:
        """Commit (or replace) one cell's score by one scorer."""
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO scores (cell_id, scorer_key, scorer, value, label,"
                " explanation, created_at) VALUES (?,?,?,?,?,?,?)",
                (cell_id, scorer_key, _dumps(scorer), value, label, explanation, _now()),
            )

    def delete_scores(self, run_id: str) -> None:
        """Drop every score of a run (before a rescore with other scorers)."""
        with self.transaction():
            self.db.execute(
                "DELETE FROM scores WHERE cell_id IN (SELECT id FROM cells WHERE run_id = ?)",
                (run_id,),
            )

    def get_scores(self, run_id: str) -> list[ScoreRecord]:
        """Every score of a run's cells."""
        rows = self.db.execute(
            "SELECT s.* FROM scores s JOIN cells c ON c.id = s.cell_id WHERE c.run_id = ?",
            (run_id,),
        ).fetchall()
        return [
            ScoreRecord(
                cell_id=r["cell_id"],
                scorer_key=r["scorer_key"],
                scorer=json.loads(r["scorer"]),
                value=r["value"],
                label=r["label"],
                explanation=r["explanation"],
            )
            for r in rows
        ]

    def find_score(self, cache_key: str, row_sha256: str, scorer_key: str) -> ScoreRecord | None:
        """Return a score given earlier (any run) to the same generation, row and scorer."""
        r = self.db.execute(
            "SELECT s.* FROM scores s JOIN cells c ON c.id = s.cell_id"
            " WHERE c.cache_key = ? AND c.row_sha256 = ? AND s.scorer_key = ?"
            " AND c.generation_key IS NOT NULL LIMIT 1",
            (cache_key, row_sha256, scorer_key),
        ).fetchone()
        if r is None:
            return None
        return ScoreRecord(
            cell_id=r["cell_id"],
            scorer_key=r["scorer_key"],
            scorer=json.loads(r["scorer"]),
            value=r["value"],
            label=r["label"],
            explanation=r["explanation"],
        )


def open_store(path: Path | str = DEFAULT_DB) -> Store:
    """Open (creating and migrating) the store at ``path``.

    Raises :class:`StoreError` when the file cannot be used (not SQLite, a
    directory, read-only, or written by a newer llmpick).
    """
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"store path {path} is a directory", "give a file path with --db")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are explicit (Store.transaction)
        db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives a killed process (only a power
        # loss can drop the last transactions), and costs no fsync per cell
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(
                f"{path} has schema version {version}; this llmpick knows up to {SCHEMA_VERSION}",
                "upgrade llmpick, or use another --db file",
            )
        migrate(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"cannot use {path} as an llmpick store: {exc}",
            "is it an SQLite file written by llmpick? give another path with --db",
        ) from exc
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc}", "check the --db path") from exc
    return Store(db, path)
