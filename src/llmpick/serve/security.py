"""The gateway's security policy: API keys, per-key limits, request rules, private log.

:class:`SecurityPolicy` implements the gateway's request-policy seam
(``authenticate`` → ``admit`` → ``on_output_tokens``… → ``on_finish``). The gateway
calls, per request:

1. ``authenticate(request)`` — the key from ``Authorization: Bearer``; 401 when keys
   are configured and it is missing, unknown, expired or revoked;
2. ``rules`` checks on the parsed body (messages, stop, tokens; 400), the body size
   itself is :class:`~llmpick.serve.rules.BodySizeLimit` middleware (413);
3. ``admit(principal, model, prompt_tokens, max_tokens)`` — model allowed for the key
   (403), RPM and TPM (429 with ``Retry-After``);
4. ``on_output_tokens(principal, model, n)`` as output streams (counted against TPM);
5. ``on_finish(record, prompt_text, output_text)`` — one access-log line (HMACs, no
   text) and the key's usage counters in the store.

Errors are :class:`~llmpick.errors.RequestRejectedError`; the gateway turns them into
its OpenAI-shaped error responses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llmpick.bodylimit import BodySizeLimit, Refusal
from llmpick.errors import ConfigError, RequestRejectedError
from llmpick.hostcheck import HostCheck, HostPolicy
from llmpick.serve.accesslog import AccessLog
from llmpick.serve.keys import ApiKey, KeyStore, SharedKeys, check_token, key_id_of
from llmpick.serve.limits import Limiter
from llmpick.serve.rules import RequestRules
from llmpick.store import Store

__all__ = [
    "AuthMiddleware",
    "KeyPrincipal",
    "SecurityOptions",
    "SecurityPolicy",
    "check_bind",
    "error_body",
    "error_response",
    "install",
]

# where AuthMiddleware leaves the principal in the ASGI scope's state
_PRINCIPAL = "llmpick_principal"

# statuses the policy itself answers before a request is admitted: not usage
_REJECTED = {400, 401, 403, 413, 429}


class SecurityOptions(BaseModel):
    """How the gateway protects itself (CLI flags / ``serve.security`` in llmpick.yaml)."""

    model_config = ConfigDict(extra="forbid")

    protect_metrics: bool = False
    protect_ready: bool = False
    redis_url: str | None = None
    #: seconds any one Redis call may take (then the limiter cannot decide: 503)
    redis_timeout_s: float = 0.5
    #: while Redis is down, admit keyed requests without limits instead of 503
    limits_fail_open: bool = False
    access_log: Path | None = None
    log_secret_file: Path | None = None
    log_text: bool = False
    #: streamed output tokens of a key gathered before they are counted (Redis round trips)
    output_flush_tokens: int = 16
    rules: RequestRules = RequestRules()


class KeyPrincipal(BaseModel):
    """Who is calling: the key's id and name (never the key) and what it may use."""

    key_id: str | None = None
    key_name: str | None = None
    allowed_models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None


class SecurityPolicy:
    """Keys from the store, limits in memory or Redis, an HMAC-only access log."""

    def __init__(
        self,
        store: Store,
        options: SecurityOptions | None = None,
        *,
        access_log: AccessLog | None = None,
    ) -> None:
        self.options = options or SecurityOptions()
        self.keys = KeyStore(store)
        self.limiter = Limiter(
            self.options.redis_url,
            timeout_s=self.options.redis_timeout_s,
            fail_open=self.options.limits_fail_open,
        )
        # with Redis, keys come from there (every replica sees the same keys)
        self.shared = SharedKeys(self.limiter.redis) if self.limiter.redis else None
        self.rules = self.options.rules
        self.access_log = access_log
        self._key_ids: dict[str, str] = {}  # key name -> id, for usage at on_finish
        self._keys_required = False
        self._pending: dict[str, int] = {}  # key id -> output tokens not yet counted
        self._tpm: dict[str, int | None] = {}  # key id -> its TPM, for the flush

    async def close(self) -> None:
        """Release Redis connections and the log file."""
        await self.limiter.close()
        if self.access_log is not None:
            self.access_log.close()

    async def keys_required(self) -> bool:
        """Whether requests need a key: any key exists (revoked or expired ones too).

        Once true it stays true (keys are never deleted), so only a gateway
        without keys looks it up per request.
        """
        if not self._keys_required:
            shared = self.shared is not None and await self.shared.has_keys()
            self._keys_required = shared or self.keys.has_keys()
        return self._keys_required

    def protects(self, path: str) -> bool:
        """Whether ``path`` needs a key (``/v1/*``; ``/metrics``, ``/ready`` by option)."""
        if path.startswith("/v1/") or path == "/v1":
            return True
        if path == "/metrics":
            return self.options.protect_metrics
        if path == "/ready":
            return self.options.protect_ready
        return False

    async def authenticate(self, request: HTTPConnection) -> KeyPrincipal:
        """The caller's key, or anonymous when no key is configured (401 otherwise).

        When :class:`AuthMiddleware` already checked the request, its result is reused.
        """
        known = request.scope.get("state", {}).get(_PRINCIPAL)
        if isinstance(known, KeyPrincipal):
            return known
        if not await self.keys_required():
            return KeyPrincipal()
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if header and scheme.lower() != "bearer":
            raise RequestRejectedError(
                401,
                "the Authorization header must read 'Bearer <key>'",
                code="invalid_authorization_header",
            )
        key = await self.verify_key(token.strip() or None)
        self._key_ids[key.name] = key.id
        return KeyPrincipal(
            key_id=key.id, key_name=key.name, allowed_models=key.models, rpm=key.rpm, tpm=key.tpm
        )

    async def verify_key(self, secret: str | None) -> ApiKey:
        """The active key ``secret`` is, or a 401 :class:`RequestRejectedError` saying why."""
        key_id = key_id_of(secret)
        found = None
        if key_id is not None:
            # both copies: a key revoked or expired in either place is refused, and a
            # Redis that does not answer leaves this store's copy to decide
            local = self.keys.lookup(key_id)
            shared = await self._shared_lookup(key_id)
            found = _stricter(local, shared)
        return check_token(secret, found)

    async def _shared_lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        if self.shared is None:
            return None
        try:
            async with asyncio.timeout(self.options.redis_timeout_s * 2):
                return await self.shared.lookup(key_id)
        except (TimeoutError, OSError, RedisError):
            return None

    async def key_owner(self, secret: str) -> str | None:
        """The name of the active key ``secret`` is, or None (the workbench's login)."""
        try:
            return (await self.verify_key(secret)).name
        except RequestRejectedError:
            return None

    async def admit(
        self, principal: KeyPrincipal, model: str, prompt_tokens: int, max_tokens: int | None
    ) -> None:
        """Rules on tokens, the key's models, then its RPM/TPM (counts the request)."""
        self.rules.check_tokens(prompt_tokens, max_tokens)
        if principal.key_id is None:
            return
        allowed = principal.allowed_models
        # ``model`` is the name the client asked for; a key allowed a route (``auto``)
        # may also name one of its categories (``auto:code``)
        if allowed and model not in allowed and model.partition(":")[0] not in allowed:
            raise RequestRejectedError(
                403,
                f"this key may not use '{model}'; it may use: {', '.join(allowed)}",
                code="model_not_allowed",
                param="model",
            )
        await self.limiter.admit(
            principal.key_id,
            rpm=principal.rpm,
            tpm=principal.tpm,
            prompt_tokens=prompt_tokens,
            output_tokens=max_tokens or 0,
        )

    async def on_output_tokens(self, principal: KeyPrincipal, model: str, n: int) -> None:
        """Count ``n`` streamed output tokens against the key's TPM.

        Counts reach the limiter every ``output_flush_tokens`` tokens of a key (and
        at the end of each of its requests), so a stream costs a few Redis round
        trips rather than one per token.
        """
        if principal.key_id is None:
            return
        self._tpm[principal.key_id] = principal.tpm
        pending = self._pending.get(principal.key_id, 0) + n
        self._pending[principal.key_id] = pending
        if pending >= self.options.output_flush_tokens:
            await self._flush(principal.key_id)

    async def _flush(self, key_id: str) -> None:
        pending = self._pending.pop(key_id, 0)
        if pending:
            await self.limiter.add_output(key_id, tpm=self._tpm.get(key_id), tokens=pending)

    async def settle(
        self,
        principal: KeyPrincipal,
        *,
        prompt_estimate: int,
        prompt_counted: int | None,
        output_reserved: int,
        output_used: int,
    ) -> None:
        """After an admitted request: give back the unused TPM reservation, fix usage.

        Admission reserved ``prompt_estimate + output_reserved``; the answer used the
        model's prompt count (when it brings one) plus the output it produced.
        """
        if principal.key_id is None:
            return
        prompt = prompt_counted if prompt_counted is not None else prompt_estimate
        await self.limiter.settle(
            principal.key_id,
            tpm=principal.tpm,
            reserved=prompt_estimate + output_reserved,
            used=prompt + output_used,
        )
        if prompt != prompt_estimate:
            await self.limiter.settle_prompt(
                principal.key_id, tpm=None, tokens=prompt - prompt_estimate
            )

    async def on_finish(self, record: Any, prompt_text: str, output_text: str) -> None:
        """One access-log line; the key's usage in the store (admitted requests only)."""
        fields = record.model_dump() if isinstance(record, BaseModel) else dict(record)
        if self.access_log is not None:
            self.access_log.write(fields, prompt_text, output_text)
        name = fields.get("key_name")
        key_id = self._key_ids.get(name or "")
        if key_id is not None:
            await self._flush(key_id)
        if key_id is not None and fields.get("status") not in _REJECTED:
            self.keys.add_usage(
                key_id,
                prompt_tokens=fields.get("prompt_tokens") or 0,
                completion_tokens=fields.get("completion_tokens") or 0,
            )


def _stricter(
    local: tuple[ApiKey, str] | None, shared: tuple[ApiKey, str] | None
) -> tuple[ApiKey, str] | None:
    """Of the store's and Redis's copy of a key, the one that refuses if either does."""
    copies = [c for c in (local, shared) if c is not None]
    for copy in copies:
        if copy[0].state() != "active":
            return copy
    return copies[0] if copies else None


def error_body(exc: RequestRejectedError) -> dict[str, Any]:
    """OpenAI's error shape for a refused request."""
    kind = {
        401: "authentication_error",
        403: "permission_error",
        429: "rate_limit_error",
        504: "timeout_error",
    }.get(exc.status, "invalid_request_error")
    return {"error": {"message": exc.message, "type": kind, "code": exc.code, "param": exc.param}}


def error_response(exc: RequestRejectedError) -> JSONResponse:
    """The JSON response for a refused request (``Retry-After`` on 429)."""
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)


class AuthMiddleware:
    """ASGI middleware: the policy's key check on every protected path (401 before routing).

    The principal is left in ``request.state`` for the gateway's handlers
    (``SecurityPolicy.authenticate`` returns it again without a second lookup).
    """

    def __init__(self, app: ASGIApp, policy: SecurityPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate protected HTTP paths; pass everything else on."""
        if scope["type"] != "http" or not self.policy.protects(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.policy.authenticate(HTTPConnection(scope))
        except RequestRejectedError as exc:
            await error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})[_PRINCIPAL] = principal
        await self.app(scope, receive, send)


def install(
    app: Starlette,
    policy: SecurityPolicy,
    *,
    larger: dict[str, int] | None = None,
    hosts: HostPolicy | None = None,
    on_refusal: Refusal | None = None,
) -> None:
    """Add the security middlewares to the gateway's app and map refusals to responses.

    Order (outermost first): Host/Origin (421/403) → body size (413, every path;
    ``larger`` gives a few paths, the workbench's upload, their own limit) → keys
    (401) → the app. The drain middleware, when used, goes outside these
    (``DrainMiddleware(app, state)``).
    """

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestRejectedError)
        return error_response(exc)

    app.add_exception_handler(RequestRejectedError, handle)
    app.add_middleware(AuthMiddleware, policy=policy)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=policy.rules.max_body_bytes,
        larger=larger,
        on_refusal=on_refusal,
    )
    if hosts is not None:
        app.add_middleware(HostCheck, policy=hosts, on_refusal=on_refusal)


def check_bind(host: str, *, keys_configured: bool, allow_open: bool) -> str | None:
    """Refuse a non-loopback bind without keys unless ``allow_open``; return a warning.

    Returns the warning to print (or ``None``); raises a ConfigError when refused.
    """
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback or keys_configured:
        return None
    if not allow_open:
        raise ConfigError(
            f"refusing to serve on {host} without API keys: anyone who can reach it could use it",
            "create a key with 'llmpick keys create --name NAME', or pass --allow-unauthenticated",
        )
    return f"warning: serving on {host} without API keys; anyone who can reach it can use it"
