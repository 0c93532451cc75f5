"""Concurrency helpers of the run matrix: the adaptive limiter and error unwrapping."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from llmpick.errors import LlmpickError

__all__ = ["AdaptiveLimiter", "first_error"]


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
