"""A request-body size limit enforced while the body is read, for every route.

:class:`BodySizeLimit` is pure ASGI and sits outside everything that reads a
body (login, CSRF and key checks, FastAPI's JSON parsing), so no request can
make the process buffer more than its limit, logged in or not:

- a ``Content-Length`` over the limit is answered 413 before a byte is read;
- a body without one (chunked) is counted as it arrives, and the moment the
  count passes the limit the request is answered 413 and the app sees the
  client go away (it stops reading).

A few paths may take more (the workbench's upload): ``larger`` maps a path to
its own limit. Every 413 is passed to ``on_refusal`` so the caller can record it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmpick.asgi import send_error

__all__ = ["BodySizeLimit"]

#: ``(scope, status, code)`` of a refused request
Refusal = Callable[[Scope, int, str], Awaitable[None] | None]


class BodySizeLimit:
    """ASGI middleware: 413 in OpenAI's error shape for a body over its path's limit."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        larger: dict[str, int] | None = None,
        on_refusal: Refusal | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 413 once the body is over the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.max_bytes)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(scope, send, limit)
            return
        received = 0
        started = rejected = answered = False

        async def counting_receive() -> Message:
            nonlocal received, rejected, answered
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    rejected = True
                    if not started:
                        answered = True
                        await self._reject(scope, send, limit)
                    # the app sees a client that went away, and stops reading
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 is the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not answered:
                raise

    async def _reject(self, scope: Scope, send: Send, limit: int) -> None:
        if self.on_refusal is not None:
            done = self.on_refusal(scope, 413, "body_too_large")
            if done is not None:
                await done
        await send_error(
            send,
            413,
            f"the request body is larger than {limit} bytes: send a shorter prompt, fewer"
            " messages or a smaller file",
            code="body_too_large",
            # close the connection: else the server reads (and drops) the rest of the body
            headers=[(b"connection", b"close")],
        )
