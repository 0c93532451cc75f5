"""Work nobody waits for is stopped: a non-streamed answer is cancelled when its client leaves.

A streamed answer stops by itself (the server cancels the generator when the
client goes away); a non-streamed one would keep generating, and keep its slot
in the pool, until the answer is complete. :func:`unless_disconnected` runs the
work beside a watcher of the ASGI channel and cancels the work the moment the
channel says ``http.disconnect`` (vLLM's ``with_cancellation`` does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

__all__ = ["ClientGone", "unless_disconnected"]

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed its connection before the answer was ready."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled with :class:`ClientGone` if the client hangs up first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientGone
