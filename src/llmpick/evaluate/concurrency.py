"""Concurrency helpers of the run matrix: the adaptive limiter, turns, error unwrapping."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from llmpick.errors import LlmpickError

__all__ = ["AdaptiveLimiter", "OneModelAtATime", "first_error"]


class AdaptiveLimiter:
    """At most ``limit`` holders at once; halved on a rate limit, +1 per success."""

    def __init__(self, limit: int) -> None:
        self.max_limit = limit
        self.limit = limit
        self.active = 0
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot while the block runs."""
        async with self._cond:
            await self._cond.wait_for(lambda: self.active < self.limit)
            self.active += 1
        try:
            yield
        finally:
            async with self._cond:
                self.active -= 1
                self._cond.notify_all()

    def rate_limited(self) -> None:
        """Back off: halve the number of requests in flight."""
        self.limit = max(1, self.limit // 2)

    async def succeeded(self) -> None:
        """Grow back towards the configured concurrency."""
        if self.limit < self.max_limit:
            async with self._cond:
                self.limit += 1
                self._cond.notify_all()


class OneModelAtATime:
    """Requests of one model at a time, as many of them as the model takes; others wait.

    In-process models share this machine's cores, so a run does not let two of
    them generate side by side (their latencies would measure each other). A
    model may hold any number of turns at once (a batching backend); when its
    last holder leaves, the model waiting longest gets the turn, together with
    all of its waiting requests. A request of the model in turn waits too while
    another model waits, so no model starves.
    """

    def __init__(self) -> None:
        self.owner: str | None = None
        self.holders = 0
        self._queue: collections.deque[tuple[str, asyncio.Future[None]]] = collections.deque()

    @contextlib.asynccontextmanager
    async def turn(self, model: str) -> AsyncIterator[None]:
        """Hold a turn for ``model`` while the block runs."""
        if not self._queue and self.owner in (None, model):
            self.owner = model
            self.holders += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._queue.append((model, waiter))
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._leave()
                else:
                    with contextlib.suppress(ValueError):
                        self._queue.remove((model, waiter))
                raise
        try:
            yield
        finally:
            self._leave()

    def _leave(self) -> None:
        self.holders -= 1
        if self.holders:
            return
        self.owner = None
        while self._queue and not self.holders:
            owner = self._queue[0][0]
            for item in [i for i in self._queue if i[0] == owner]:
                self._queue.remove(item)
                if not item[1].done():
                    item[1].set_result(None)
                    self.holders += 1
            if self.holders:
                self.owner = owner


def first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """Return the first real error inside a (nested) exception group, preferring llmpick's."""
    flat: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            flat.append(error)

    walk(group)
    for error in flat:
        if isinstance(error, LlmpickError):
            return error
    for error in flat:
        if not isinstance(error, asyncio.CancelledError):
            return error
    return flat[0] if flat else group
