"""Every gateway request's timing and token counts in the store — never its text.

The gateway hands each finished request's :class:`RequestRecord` to a
:class:`RequestLog`, which writes them in small batches from a background task
(a request never waits for SQLite). :func:`serve_stats` reads them back as the
monitoring history: p50/p95/p99 latency, TTFT, tokens/s and error rate per model
over a time window (``llmpick serve stats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
from pydantic import BaseModel

from llmpick.store import Store

__all__ = ["ModelServeStats", "RequestLog", "RequestRecord", "serve_stats"]

_COLUMNS = (
    "request_id", "started_at", "endpoint", "key_name", "route", "category", "model", "status",
    "error_type", "stream", "fallback_from", "prompt_tokens", "completion_tokens",
    "time_to_first_token_s", "total_s",
)  # fmt: skip


class RequestRecord(BaseModel):
    """One request as the gateway saw it: timing and counts only, never text."""

    request_id: str
    started_at: float
    endpoint: str
    key_name: str | None = None
    route: str | None = None
    category: str | None = None
    model: str | None = None
    status: int
    error_type: str | None = None
    stream: bool = False
    fallback_from: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    time_to_first_token_s: float | None = None
    total_s: float | None = None


class RequestLog:
    """Batches request records into the ``serve_requests`` table."""

    def __init__(self, store: Store, flush_every_s: float = 0.5) -> None:
        self.store = store
        self.flush_every_s = flush_every_s
        self._pending: list[RequestRecord] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, record: RequestRecord) -> None:
        """Queue one record (written within ``flush_every_s``)."""
        self._pending.append(record)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(self.flush_every_s)
        self.flush()

    def flush(self) -> None:
        """Write what is pending now."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        marks = ", ".join("?" for _ in _COLUMNS)
        with self.store.transaction():
            self.store.db.executemany(
                f"INSERT INTO serve_requests ({', '.join(_COLUMNS)}) VALUES ({marks})",
                [tuple(getattr(r, c) for c in _COLUMNS) for r in batch],
            )

    async def aclose(self) -> None:
        """Stop the timer and write the rest."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()


class ModelServeStats(BaseModel):
    """Live-measured serving figures of one model over a window."""

    model: str
    requests: int
    errors: int
    error_rate: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_p99_s: float | None
    time_to_first_token_p50_s: float | None
    output_tokens_per_second: float | None
    prompt_tokens: int
    completion_tokens: int


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def serve_stats(store: Store, window_s: float | None = 3600.0) -> list[ModelServeStats]:
    """Per model: request count, error rate, latency percentiles and decode rate."""
    since = time.time() - window_s if window_s else 0.0
    rows = store.db.execute(
        "SELECT model, status, total_s, time_to_first_token_s, prompt_tokens, completion_tokens"
        " FROM serve_requests WHERE started_at >= ? AND model IS NOT NULL ORDER BY model",
        (since,),
    ).fetchall()
    by_model: dict[str, list[tuple[int, float | None, float | None, int, int]]] = {}
    for model, status, total, ttft, p_tok, c_tok in rows:
        by_model.setdefault(model, []).append((status, total, ttft, p_tok or 0, c_tok or 0))
    stats = []
    for model, items in by_model.items():
        ok = [i for i in items if i[0] < 400]
        totals = [i[1] for i in ok if i[1] is not None]
        ttfts = [i[2] for i in ok if i[2] is not None]
        decode = [
            (i[4] - 1) / (i[1] - i[2])
            for i in ok
            if i[1] is not None and i[2] is not None and i[4] > 1 and i[1] > i[2]
        ]
        errors = len(items) - len(ok)
        stats.append(
            ModelServeStats(
                model=model,
                requests=len(items),
                errors=errors,
                error_rate=errors / len(items),
                latency_p50_s=_pct(totals, 50),
                latency_p95_s=_pct(totals, 95),
                latency_p99_s=_pct(totals, 99),
                time_to_first_token_p50_s=_pct(ttfts, 50),
                output_tokens_per_second=float(np.median(decode)) if decode else None,
                prompt_tokens=sum(i[3] for i in items),
                completion_tokens=sum(i[4] for i in items),
            )
        )
    return stats
