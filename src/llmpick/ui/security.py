"""CSRF protection and the optional key login of the workbench.

CSRF: a double-submit token. The first page sets a random token in an
``HttpOnly; SameSite=Strict`` cookie and writes it into the page; every
state-changing request must send it back in the ``X-CSRF-Token`` header, which
another site can neither read nor set. Compared in constant time.
"""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import secrets
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, Response

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "KeyCheck",
    "KeysRequired",
    "csrf_token",
    "is_loopback",
    "key_owner",
    "require_csrf",
]

CSRF_COOKIE = "llmpick_csrf"
CSRF_HEADER = "x-csrf-token"

#: checks an API key and returns who it belongs to (None: not a valid key); may be async
KeyCheck = Callable[[str], str | Awaitable[str | None] | None]
#: whether any key exists now; while none does, only loopback clients are served
KeysRequired = Callable[[], Awaitable[bool]]


async def key_owner(check: KeyCheck, key: str) -> str | None:
    """Who ``key`` belongs to by ``check`` (sync or async), or None."""
    found = check(key)
    if inspect.isawaitable(found):
        found = await found
    return found


def is_loopback(host: str | None) -> bool:
    """Whether a client address is this machine (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def csrf_token(request: Request, response: Response) -> str:
    """The request's CSRF token, set as a cookie on ``response`` when it has none."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) != 43:
        token = secrets.token_urlsafe(32)
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="strict", path="/", secure=False
        )
    return token


def require_csrf(request: Request) -> None:
    """Refuse a state-changing request whose header does not match its cookie (403)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not header or not hmac.compare_digest(cookie, header):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")
