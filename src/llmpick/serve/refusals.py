"""Every refused request leaves a trace: the request log, the access log and ``/metrics``.

Requests the gateway admits are recorded by :meth:`Gateway.finish` (their
lifecycle: rules → route → admit → open → stream → record). Those refused on
the way there — a foreign ``Host`` (421), a body over the limit (413), no or a
bad key (401), an invalid body (400), a model the key may not use (403), over a
rate limit (429), an unknown model (404), the workbench's refusals — never
reach it, so :class:`RefusalRecorder`, the outermost pure-ASGI layer, records
each answer of status 400 or more that nothing recorded: one request-log row,
one access-log line (no text) and ``llmpick_refused_requests_total{status,code}``.
It only looks at the response's first message, so it costs a closure per request.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmpick.serve.gateway import Gateway
from llmpick.serve.requestlog import RequestRecord

__all__ = ["RECORDED", "REFUSAL_CODE", "RefusalRecorder", "note_refusal"]

#: scope-state flag: the request was recorded already (by the gateway's lifecycle)
RECORDED = "llmpick_recorded"
#: scope-state entry: the machine-readable code of a refusal, when the refuser knew it
REFUSAL_CODE = "llmpick_refusal_code"


def note_refusal(scope: Scope, status: int, code: str) -> None:
    """What middleware that refuses tells the recorder (its ``on_refusal`` callback)."""
    scope.setdefault("state", {})[REFUSAL_CODE] = code


class RefusalRecorder:
    """ASGI middleware recording every 4xx/5xx answer the gateway's lifecycle did not."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; record its answer if it is a refusal nobody recorded."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at, start_s = time.time(), time.perf_counter()

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                state = scope.get("state") or {}
                if not state.get(RECORDED):
                    state[RECORDED] = True
                    await self._record(scope, message["status"], started_at, start_s)
            await send(message)

        await self.app(scope, receive, watching_send)

    async def _record(self, scope: Scope, status: int, started_at: float, start_s: float) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        principal = state.get("llmpick_principal")
        prepared = state.get("llmpick_prepared")
        record = RequestRecord(
            request_id=f"refused-{uuid.uuid4().hex[:24]}",
            started_at=started_at,
            endpoint=scope["path"][:200],
            key_name=getattr(principal, "key_name", None)
            or getattr(getattr(prepared, "principal", None), "key_name", None),
            route=getattr(getattr(prepared, "decision", None), "route", None),
            model=getattr(prepared, "requested", None),
            status=status,
            error_type=str(state.get(REFUSAL_CODE) or f"http_{status}"),
            total_s=time.perf_counter() - start_s,
        )
        self.gateway.metrics.refused.labels(str(status), record.error_type).inc()
        if self.gateway.request_log is not None:
            self.gateway.request_log.add(record)
        policy = self.gateway.policy
        if policy is not None and policy.access_log is not None:
            policy.access_log.write(record.model_dump(), "", "")
