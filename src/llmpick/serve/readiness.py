"""``GET /ready``: names and states for anyone, details for a key; background re-probes.

The public answer says whether this replica can serve (``ready``, ``degraded``,
``unavailable``), which models are failing, each model's name and state, and
whether the rate limiter's storage answers. Paths of local model files, upstream
URLs, error texts and replica lists are shown only to a request with a valid
key (or to everyone with ``--protect-metrics``, which keys the whole route).

Remote models are probed by :class:`HealthProber` every ``interval_s`` seconds
(a failing one comes back on its own); an anonymous ``/ready`` reads the last
state and never probes, so it cannot be used to hammer an upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.requests import Request

from llmpick.errors import RequestRejectedError
from llmpick.serve.gateway import Gateway

__all__ = ["HealthProber", "readiness"]

log = logging.getLogger("llmpick.serve")

_PUBLIC = ("name", "state", "in_flight", "queued", "concurrency")


async def _may_see_details(gateway: Gateway, request: Request) -> bool:
    policy = gateway.policy
    if policy is None:
        return False
    if policy.options.protect_ready:
        return True  # the middleware already required a key
    if not request.headers.get("authorization"):
        return False
    try:
        principal = await policy.authenticate(request)
    except RequestRejectedError:
        return False
    return principal.key_id is not None


async def readiness(gateway: Gateway, request: Request) -> tuple[dict[str, Any], int]:
    """The body and status of ``/ready``."""
    detailed = await _may_see_details(gateway, request)
    states = []
    for name in gateway.served:
        model = gateway.pool.get(name)
        # a key holder (the operator's monitoring) gets a fresh probe of remote models
        fresh = detailed and not model.backend.is_local
        states.append(await model.check() if fresh else model.health())
    failing = [h.name for h in states if h.state == "failing"]
    firsts = {models[0] for models in gateway.route_names().values() if models}
    limiter = await _limiter(gateway)
    if (failing and len(failing) == len(states)) or limiter["state"] == "refusing":
        status, code = "unavailable", 503
    elif failing or set(failing) & firsts or limiter["state"] == "open":
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    models = [h.model_dump() if detailed else h.model_dump(include=set(_PUBLIC)) for h in states]
    return {"status": status, "failing": failing, "models": models, "limiter": limiter}, code


async def _limiter(gateway: Gateway) -> dict[str, Any]:
    """The limiter's storage: ``ok``, or what requests with limits get while it is down."""
    if gateway.policy is None:
        return {"storage": "none", "state": "ok"}
    limiter = gateway.policy.limiter
    storage = "redis" if limiter.redis is not None else "memory"
    if await limiter.check_storage():
        return {"storage": storage, "state": "ok"}
    # down: keyed requests are refused (fail closed) or pass unlimited (fail open)
    return {"storage": storage, "state": "open" if limiter.fail_open else "refusing"}


class HealthProber:
    """Probes the gateway's remote models every ``interval_s`` (each probe time-limited)."""

    def __init__(self, gateway: Gateway, interval_s: float = 10.0, timeout_s: float = 5.0) -> None:
        self.gateway = gateway
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start probing in the background (from the app's lifespan)."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def aclose(self) -> None:
        """Stop probing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def probe_once(self) -> None:
        """Probe each remote served model once."""
        for name in list(self.gateway.served):
            model = self.gateway.pool.get(name)
            if model.backend.is_local:
                continue
            try:
                async with asyncio.timeout(self.timeout_s):
                    await model.check()
            except TimeoutError:
                log.warning("health probe of %s timed out", name)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.probe_once()
            except Exception:  # a probe must never end the loop
                log.exception("health probe failed")
