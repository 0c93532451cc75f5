"""Graceful drain on SIGTERM: stop taking work, finish what is in flight, exit 0.

uvicorn on its own closes the listening socket at SIGTERM, so a load balancer
sees refused connections rather than a replica going out of rotation. Here the
first SIGTERM (or SIGINT) instead:

1. turns ``/ready`` into 503 (the load balancer takes the replica out);
2. answers every new request with 503 in OpenAI's error shape (``/health`` stays
   200: the process is alive);
3. waits until the requests in flight, streams included, have finished, or until
   ``deadline_s``; then uvicorn shuts down and the process exits 0.

A second signal stops at once (uvicorn's own behaviour).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DrainMiddleware", "DrainState", "DrainingServer"]


class DrainState:
    """Whether the process is draining, and how many requests are in flight."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        """A request started."""
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        """A request finished (its response fully sent, or the client left)."""
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self, deadline_s: float) -> bool:
        """Wait until nothing is in flight or ``deadline_s`` passed; True if idle."""
        try:
            async with asyncio.timeout(deadline_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


class DrainMiddleware:
    """ASGI middleware: counts requests in flight; 503 on new ones while draining."""

    def __init__(self, app: ASGIApp, state: DrainState, open_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.state = state
        self.open_paths = ("/health", *open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse while draining (but ``/health``); otherwise count the request in flight."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.state.draining and scope["path"] not in self.open_paths:
            await _unavailable(send)
            return
        self.state.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.leave()


async def _unavailable(send: Send) -> None:
    body = json.dumps(
        {
            "error": {
                "message": "this gateway replica is shutting down: retry the request"
                " (another replica, or this one after it restarts)",
                "type": "server_error",
                "code": "shutting_down",
                "param": None,
            }
        }
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", b"application/json"),
            (b"retry-after", b"1"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM/SIGINT drains before shutting down."""

    def __init__(self, config: uvicorn.Config, state: DrainState, deadline_s: float) -> None:
        super().__init__(config)
        self.drain_state = state
        self.deadline_s = deadline_s
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        """First signal: drain; second: uvicorn's immediate exit."""
        if self.drain_state.draining or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self.drain_state.draining = True
        loop = asyncio.get_running_loop()
        # a signal handler may run between any two steps of the loop: schedule, don't run
        loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        start = time.monotonic()
        await self.drain_state.wait_idle(self.deadline_s)
        # whatever is still in flight gets what is left of the deadline from uvicorn
        left = max(0.0, self.deadline_s - (time.monotonic() - start))
        self.config.timeout_graceful_shutdown = max(1, round(left))
        self.should_exit = True
