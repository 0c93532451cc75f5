"""Small pure-ASGI pieces shared by the gateway and the workbench.

:func:`error_document` is the one builder of OpenAI's error shape
(``{"error": {"message", "type", "code", "param"}}``); :func:`send_error` sends
it from middleware that answers before any app code runs (Host check, body
limit, drain), without building a Starlette response.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

__all__ = ["error_document", "send_error"]

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_document(
    message: str,
    *,
    status: int = 400,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error body; ``type`` defaults from the status."""
    kind = type or _TYPES.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}


async def send_error(
    send: Send,
    status: int,
    message: str,
    *,
    code: str | None = None,
    type: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer a request with an OpenAI-shaped JSON error, straight on the ASGI channel."""
    body = json.dumps(error_document(message, status=status, type=type, code=code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
