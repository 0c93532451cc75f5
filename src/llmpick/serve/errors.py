"""Every error a client can meet, as one OpenAI-shaped JSON body with the right status.

Library errors map to HTTP statuses here and nowhere else:

=====================================  ======  ===========================
error                                  status  ``type``
=====================================  ======  ===========================
RequestRejectedError (policy, rules)   its own  (see ``security.error_body``)
request body that fails validation     400     invalid_request_error
ContextLengthError                     400     invalid_request_error
UnsupportedRequestError                400     invalid_request_error
ModelNotFoundError                     404     not_found_error
RateLimitError (upstream 429s)         429     rate_limit_error
QueueFullError / ModelUnavailableError 503     overloaded_error
UpstreamTimeoutError                   504     timeout_error
any other BackendError                 502     upstream_error
anything else                          500     server_error (no trace)
=====================================  ======  ===========================
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmpick.errors import (
    BackendError,
    ContextLengthError,
    LlmpickError,
    ModelNotFoundError,
    ModelUnavailableError,
    QueueFullError,
    RateLimitError,
    RequestRejectedError,
    UnsupportedRequestError,
    UpstreamTimeoutError,
)
from llmpick.serve.schemas import ErrorBody, ErrorResponse
from llmpick.serve.security import error_body

__all__ = ["error_payload", "install_error_handlers", "status_of"]

log = logging.getLogger("llmpick.serve")

_BY_TYPE: list[tuple[type[LlmpickError], int, str, str]] = [
    (ContextLengthError, 400, "invalid_request_error", "context_length_exceeded"),
    (UnsupportedRequestError, 400, "invalid_request_error", "unsupported_parameter"),
    (ModelNotFoundError, 404, "not_found_error", "model_not_found"),
    (RateLimitError, 429, "rate_limit_error", "upstream_rate_limited"),
    (QueueFullError, 503, "overloaded_error", "queue_full"),
    (ModelUnavailableError, 503, "overloaded_error", "model_unavailable"),
    (UpstreamTimeoutError, 504, "timeout_error", "upstream_timeout"),
    (BackendError, 502, "upstream_error", "upstream_error"),
]


def status_of(exc: BaseException) -> int:
    """The HTTP status an error is answered with."""
    if isinstance(exc, RequestRejectedError):
        return exc.status
    for cls, status, _, _ in _BY_TYPE:
        if isinstance(exc, cls):
            return status
    return 500


def error_payload(exc: BaseException) -> dict[str, object]:
    """OpenAI's ``{"error": {...}}`` for any error (never a stack trace)."""
    if isinstance(exc, RequestRejectedError):
        return error_body(exc)
    for cls, _, kind, code in _BY_TYPE:
        if isinstance(exc, cls):
            assert isinstance(exc, LlmpickError)
            message = exc.one_line()
            param = getattr(exc, "param", None)
            return ErrorResponse(
                error=ErrorBody(message=message, type=kind, code=code, param=param)
            ).model_dump()
    return ErrorResponse(
        error=ErrorBody(
            message="the gateway failed on this request; see its log", type="server_error"
        )
    ).model_dump()


def _response(exc: BaseException) -> JSONResponse:
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(exc, RequestRejectedError) and exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, QueueFullError | ModelUnavailableError):
        retry_after = retry_after or 1
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse(error_payload(exc), status_code=status_of(exc), headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    what = first.get("msg", "invalid request body")
    if first.get("type") == "extra_forbidden":
        what = "this field is not accepted by the gateway; remove it"
    if first.get("type") == "json_invalid":  # loc is a byte offset, not a field
        reason = (first.get("ctx") or {}).get("error", "")
        return f"the body is not valid JSON at byte {loc[-1] if loc else 0}: {reason}", None
    return (f"{param}: {what}" if param else what), param


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in OpenAI's shape."""

    async def llmpick_error(request: Request, exc: Exception) -> JSONResponse:
        return _response(exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        body = ErrorResponse(
            error=ErrorBody(
                message=message, type="invalid_request_error", code="invalid_request", param=param
            )
        )
        return JSONResponse(body.model_dump(), status_code=400)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        body = ErrorResponse(error=ErrorBody(message=str(exc.detail), type=kind))
        return JSONResponse(body.model_dump(), status_code=exc.status_code)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path, exc_info=exc)
        return _response(exc)

    app.add_exception_handler(LlmpickError, llmpick_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
