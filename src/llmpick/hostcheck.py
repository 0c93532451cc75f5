"""Host and Origin checks against DNS rebinding, for the gateway and the workbench.

A web site the user visits can make its own name resolve to 127.0.0.1 and then
talk to a server on this machine as if it were the same origin (DNS rebinding).
The browser still sends the attacker's name in ``Host``, so a server that answers
only the names it is known by cannot be reached that way:

- ``Host`` must be an IP literal (an address cannot be rebound), ``localhost``,
  the name the server was bound to, or a name the operator allowed
  (``--allowed-host``); otherwise 421 Misdirected Request;
- a state-changing request (POST, PUT, PATCH, DELETE) that carries ``Origin``
  must come from the same host and port it is sent to, or an allowed name;
  otherwise 403. Clients that send no ``Origin`` (curl, SDKs) are not browsers
  and pass.

:class:`HostCheck` is pure ASGI (a dictionary lookup per request); each refusal
is passed to ``on_refusal`` so the caller can record it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from llmpick.asgi import send_error

__all__ = ["HostCheck", "HostPolicy", "Refusal"]

log = logging.getLogger("llmpick.hostcheck")

_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})

#: ``(scope, status, code)`` of a refused request, for access logs and metrics
Refusal = Callable[[Scope, int, str], Awaitable[None] | None]


def _split_host(value: str) -> tuple[str, str | None]:
    """``host[:port]`` (with ``[v6]``) as (lowercase host, port)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return value.rstrip("."), None
    return host.rstrip("."), port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` names a server answers: IP literals, localhost, its own and allowed ones."""

    def __init__(self, bound: str, allowed: Iterable[str] = ()) -> None:
        names = {_split_host(bound)[0], *(_split_host(a)[0] for a in allowed if a)}
        self.names = frozenset(n for n in names if n and not _is_ip(n)) | _LOCAL_NAMES
        self.allow_any = "*" in self.names

    def host_allowed(self, host: str) -> bool:
        """Whether a ``Host`` header's name may reach this server."""
        name, _ = _split_host(host)
        return self.allow_any or _is_ip(name) or name in self.names

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Whether a browser page of ``origin`` may change state through ``host``."""
        if origin == "null":
            return False
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        if parts.netloc.lower() == host.strip().lower():
            return True  # the page is the server's own
        name, _ = _split_host(parts.netloc)
        return self.allow_any or (name in self.names and name not in _LOCAL_NAMES)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return None


class HostCheck:
    """ASGI middleware: 421 for an unknown ``Host``, 403 for a foreign ``Origin``."""

    def __init__(self, app: ASGIApp, policy: HostPolicy, on_refusal: Refusal | None = None) -> None:
        self.app = app
        self.policy = policy
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass allowed requests on; answer the others at once, before any body is read."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host") or ""
        if not self.policy.host_allowed(host):
            await self._refuse(
                scope, send, 421, "host_not_allowed",
                f"this server does not answer the name '{host[:100]}': use its address, or"
                " start it with --allowed-host NAME",
            )  # fmt: skip
            return
        origin = _header(scope, b"origin")
        if (
            origin is not None
            and scope.get("method", "GET") in _CHANGING
            and not self.policy.origin_allowed(origin, host)
        ):
            await self._refuse(
                scope, send, 403, "origin_not_allowed",
                f"requests from pages of '{origin[:100]}' may not change anything here",
            )  # fmt: skip
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, status: int, code: str, text: str) -> None:
        log.warning("refused %s %s: %s", scope.get("method"), scope.get("path"), code)
        if self.on_refusal is not None:
            done = self.on_refusal(scope, status, code)
            if done is not None:
                await done
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_error(send, status, text, code=code, type="invalid_request_error")
