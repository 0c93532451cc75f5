"""The HTTP side of the ``openai`` backend: one pooled keep-alive client per upstream.

Written on aiohttp directly rather than through the openai SDK: for a proxy the SDK's
request building, its own HTTP stack and a pydantic object per streamed chunk were two
thirds of the gateway's added time (``benchmarks/gateway_overhead.py``). aiohttp rather
than httpx: one POST to an instant upstream took 0.37 ms with aiohttp and 1.23 ms with
httpx on the same machine (``benchmarks/gateway_frontier.py`` measures the gateway
built on it). Bodies are encoded and SSE documents decoded with orjson; nothing else is
done per chunk. Failures come out as :class:`UpstreamFailure`, which the backend
translates into llmpick's typed errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import aiohttp
import orjson

__all__ = ["UpstreamFailure", "UpstreamHTTP", "retry_after_s", "sse_documents"]

FailureKind = Literal["timeout", "connect", "broken", "status", "unreadable"]


class UpstreamFailure(Exception):
    """A request to the upstream that did not give a usable answer."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        cause: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.headers = headers
        self.cause = cause


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds asked for by ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``."""
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return float(millis) / 1000.0
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, (when - dt.datetime.now(when.tzinfo)).total_seconds())
    except (TypeError, ValueError):
        return None


def _error_message(content: bytes, status: int) -> str:
    """The ``error.message`` of an OpenAI-shaped error body, else the body's start."""
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        text = content.decode("utf-8", errors="replace").strip()
        return text[:500] or f"HTTP {status}"
    if isinstance(doc, dict):
        error = doc.get("error", doc.get("detail", doc))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(error)
    return str(doc)


#: a dead keep-alive connection (the server closed it between requests): safe to resend
_STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


class UpstreamHTTP:
    """Requests to one OpenAI-compatible server, over a keep-alive pool per event loop."""

    def __init__(
        self, base_url: str, api_key: str, timeout_s: float, connect_timeout_s: float
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "authorization": f"Bearer {api_key}",
            "content-type": "application/json",
            "accept": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def session(self) -> aiohttp.ClientSession:
        """The session of the running event loop (connections belong to a loop)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                # the pool's concurrency bounds what is in flight; no second limit here
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                auto_decompress=True,
            )
            self._loop = loop
        return self._session

    def _failure(self, exc: BaseException) -> UpstreamFailure:
        cause = type(exc).__name__
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return UpstreamFailure("connect", f"cannot connect to {self.base_url}", cause=cause)
        if isinstance(exc, asyncio.TimeoutError):
            return UpstreamFailure("timeout", f"request to {self.base_url} timed out", cause=cause)
        return UpstreamFailure("broken", f"the connection broke ({cause})", cause=cause)

    async def get_json(self, path: str, timeout_s: float | None = None) -> Any:
        """GET ``path``; the decoded JSON body of a 2xx answer."""
        timeout = (
            aiohttp.ClientTimeout(total=timeout_s, sock_connect=self._connect_timeout_s)
            if timeout_s
            else self._timeout
        )
        try:
            async with self.session().get(self.base_url + path, timeout=timeout) as response:
                content = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._failure(exc) from exc
        return self._decoded(response, content)

    async def post_json(self, path: str, body: dict[str, Any], retries: int = 0) -> Any:
        """POST ``body``; the decoded JSON of a 2xx answer (``retries`` on a dead connection)."""
        content = orjson.dumps(body)
        for attempt in range(retries + 1):
            try:
                async with self.session().post(self.base_url + path, data=content) as response:
                    answer = await response.read()
                break
            except _STALE as exc:
                if attempt == retries:
                    raise self._failure(exc) from exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self._failure(exc) from exc
        return self._decoded(response, answer)

    def _decoded(self, response: aiohttp.ClientResponse, content: bytes) -> Any:
        if response.status >= 400:
            raise UpstreamFailure(
                "status",
                _error_message(content, response.status),
                status=response.status,
                headers=response.headers,
            )
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamFailure("unreadable", "the answer is not JSON") from exc

    @asynccontextmanager
    async def stream_lines(
        self, path: str, body: dict[str, Any]
    ) -> AsyncIterator[AsyncIterator[str]]:
        """POST ``body`` and give the answer's lines as they arrive (a 2xx answer only)."""
        data = orjson.dumps(body)
        try:
            try:
                response = await self.session().post(self.base_url + path, data=data)
            except _STALE:
                # a kept-alive connection the server closed while idle: nothing was answered
                response = await self.session().post(self.base_url + path, data=data)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._failure(exc) from exc
        try:
            if response.status >= 400:
                try:
                    content = await response.read()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    raise self._failure(exc) from exc
                raise UpstreamFailure(
                    "status",
                    _error_message(content, response.status),
                    status=response.status,
                    headers=response.headers,
                )
            yield self._lines(response)
        finally:
            response.release()

    async def _lines(self, response: aiohttp.ClientResponse) -> AsyncIterator[str]:
        """Lines as they arrive, split here (aiohttp's own readline caps a line's length)."""
        pending = b""
        try:
            async for piece in response.content.iter_any():
                pending += piece
                if b"\n" not in piece:
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._failure(exc) from exc
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", errors="replace")

    async def aclose(self) -> None:
        """Close the session; one made on another (finished) event loop is dropped."""
        session, loop = self._session, self._loop
        self._session = None
        if session is not None and loop is asyncio.get_running_loop():
            await session.close()


async def sse_documents(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON documents of a server-sent event stream, up to ``data: [DONE]``.

    An ``error`` document ends the stream with :class:`UpstreamFailure` (kind ``status``,
    no status code), as the SDK would with ``APIError``.
    """
    data: list[str] = []
    done = False
    async for line in lines:
        if done:
            continue  # read to the end, so the connection goes back to the pool
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
            continue
        if line or not data:
            continue  # comments, event names, ids and keep-alive blank lines
        payload, data = "\n".join(data), []
        if payload.startswith("[DONE]"):
            done = True
            continue
        yield _sse_document(payload)
    if data and not done and not data[0].startswith("[DONE]"):
        yield _sse_document("\n".join(data))  # the last event had no blank line after it


def _sse_document(payload: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFailure(
            "unreadable", "the server streamed something that is not JSON"
        ) from exc
    if not isinstance(doc, dict):
        raise UpstreamFailure(
            "unreadable", f"the server streamed something that is not an object: {doc!r}"
        )
    if doc.get("error"):
        error = doc["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamFailure("status", f"the server ended the stream with an error: {message}")
    return doc
