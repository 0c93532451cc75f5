"""Per-key request and token limits, in memory or in Redis shared by gateway replicas.

The algorithms and storage come from the ``limits`` library
(https://limits.readthedocs.io/en/stable/strategies.html):

- requests per minute: its *moving window* (one entry per request, exact: a burst
  of 50 concurrent requests against 20/minute lets exactly 20 through);
- tokens per minute: its *sliding window counter* (two counters per key, so the cost
  does not grow with the limit; the previous minute's count is weighted by how much
  of it still overlaps the window). Tokens are counted exactly: the prompt when the
  request is admitted, output tokens as they stream.

With ``redis://host:port`` both live in Redis (the library runs each check-and-add
as one Lua script, so it is atomic across processes), and so do the usage counters
(``HINCRBY``), which is what makes two gateway processes enforce one budget.

A request admitted while the key had budget is allowed to finish; output that goes
past the budget fills the window, so the key's next request waits (``429`` with
``Retry-After``). The overshoot is bounded by one request's ``max_tokens``.

Every Redis call has a time limit (``timeout_s``, socket and overall). When the
storage does not answer, admission cannot decide: the request is refused with
503 and ``Retry-After`` (fail closed, the default), or admitted without limits
when the operator chose ``fail_open``. Counting after admission (output tokens,
usage) never fails a request; what could not be counted is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from pydantic import BaseModel

from llmpick.errors import ConfigError, RequestRejectedError

__all__ = ["LimitUsage", "Limiter"]

log = logging.getLogger("llmpick.serve")
T = TypeVar("T")
#: what a Redis that is down, stalled or restarting raises
_STORAGE_ERRORS = (TimeoutError, OSError, ConnectionError, aioredis.RedisError)

_USAGE_PREFIX = "llmpick:usage:"


class LimitUsage(BaseModel):
    """Usage counters of one key (all time, in this limiter's storage)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _storage_uri(redis_url: str) -> str:
    if redis_url.startswith(("redis://", "rediss://")):
        return "async+" + redis_url
    raise ConfigError(
        f"--redis takes a redis:// URL, got '{redis_url}'", "e.g. --redis redis://127.0.0.1:6379/0"
    )


class Limiter:
    """RPM and TPM per key; memory (one process) or Redis (every replica sharing it)."""

    def __init__(
        self, redis_url: str | None = None, *, timeout_s: float = 0.5, fail_open: bool = False
    ) -> None:
        self.redis_url = redis_url
        self.timeout_s = timeout_s
        self.fail_open = fail_open
        self._storage: Storage
        self._redis: aioredis.Redis | None = None
        self._memory_usage: dict[str, LimitUsage] = {}
        if redis_url:
            self._redis = aioredis.Redis.from_url(
                redis_url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=5,
            )
            # one connection pool for the limiter and the counters, closed by close()
            self._storage = RedisStorage(
                _storage_uri(redis_url),
                implementation="redispy",
                connection_pool=self._redis.connection_pool,  # type: ignore[arg-type]
            )
        else:
            self._storage = MemoryStorage()
        self._rpm_limiter = MovingWindowRateLimiter(self._storage)
        self._tpm_limiter = SlidingWindowCounterRateLimiter(self._storage)

    @property
    def redis(self) -> aioredis.Redis | None:
        """The Redis client (None with memory storage)."""
        return self._redis

    async def close(self) -> None:
        """Close the Redis connection (memory storage needs nothing)."""
        if self._redis is not None:
            await self._redis.aclose()

    async def check_storage(self) -> bool:
        """Whether the storage answers within the time limit (for ``/ready``)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return bool(await self._storage.check())
        except _STORAGE_ERRORS:
            return False

    async def _bounded(self, call: Awaitable[T]) -> T:
        async with asyncio.timeout(self.timeout_s * 2):
            return await call

    async def admit(
        self,
        key_id: str,
        *,
        rpm: int | None,
        tpm: int | None,
        prompt_tokens: int,
        output_tokens: int = 0,
    ) -> None:
        """Count one request and reserve its tokens, or raise a 429 saying when to retry.

        TPM is a bound: the prompt *and* the request's output cap (``output_tokens``,
        its ``max_tokens``) are reserved here; :meth:`settle` gives back what the
        answer did not use. A storage that does not answer in time: 503 with
        ``Retry-After`` (or, with ``fail_open``, admitted unlimited, a warning logged).
        """
        if not (rpm or tpm):
            await self._quietly(
                self._add_usage(key_id, requests=1, prompt_tokens=prompt_tokens), "usage"
            )
            return
        try:
            await self._bounded(
                self._admit(key_id, rpm=rpm, tpm=tpm, prompt_tokens=prompt_tokens,
                            reserve=prompt_tokens + output_tokens)
            )  # fmt: skip
        except _STORAGE_ERRORS as exc:
            if self.fail_open:
                log.warning("rate limiter storage down (%s): admitted without limits", exc)
                return
            raise RequestRejectedError(
                503,
                "the gateway's rate limiter cannot reach its storage (Redis), so it cannot"
                " tell whether this key is within its limits: retry shortly",
                code="limiter_unavailable",
                retry_after=2,
            ) from None

    async def _admit(
        self, key_id: str, *, rpm: int | None, tpm: int | None, prompt_tokens: int, reserve: int
    ) -> None:
        if tpm:
            if reserve > tpm:
                raise RequestRejectedError(
                    400,
                    f"the prompt ({prompt_tokens} tokens) and max_tokens"
                    f" ({reserve - prompt_tokens}) add up to {reserve} tokens but this key may"
                    f" use {tpm} tokens per minute: shorten the prompt or ask for fewer tokens",
                    code="prompt_exceeds_tpm",
                    param="max_tokens",
                )
            # check tokens before counting the request, so a request refused for
            # tokens does not also use up the request budget
            tpm_item = RateLimitItemPerMinute(tpm)
            if not await self._tpm_limiter.test(tpm_item, "tpm", key_id, cost=reserve):
                raise await self._too_many(self._tpm_limiter, tpm_item, key_id, "tpm", tpm)
        if rpm:
            rpm_item = RateLimitItemPerMinute(rpm)
            if not await self._rpm_limiter.hit(rpm_item, "rpm", key_id):
                raise await self._too_many(self._rpm_limiter, rpm_item, key_id, "rpm", rpm)
        if (
            tpm
            and reserve
            and not await self._tpm_limiter.hit(tpm_item, "tpm", key_id, cost=reserve)
        ):
            raise await self._too_many(self._tpm_limiter, tpm_item, key_id, "tpm", tpm)
        await self._add_usage(key_id, requests=1, prompt_tokens=prompt_tokens)

    async def add_output(self, key_id: str, *, tpm: int | None, tokens: int) -> None:
        """Count ``tokens`` output tokens in the usage counters (TPM reserved them already)."""
        if tokens <= 0:
            return
        await self._quietly(self._add_usage(key_id, completion_tokens=tokens), "usage")

    async def settle(self, key_id: str, *, tpm: int | None, reserved: int, used: int) -> None:
        """Bring the TPM window from the tokens reserved at admission to those used.

        Unused reservation is given back (a negative hit on the current window); a
        use over it (a prompt the model counted longer) fills what is left.
        """
        if not tpm or reserved == used:
            return
        if used < reserved:
            item = RateLimitItemPerMinute(tpm)
            await self._quietly(
                self._tpm_limiter.hit(item, "tpm", key_id, cost=used - reserved), "refund"
            )
        else:
            await self._quietly(self._charge_tpm(key_id, tpm, used - reserved), "tokens")

    async def _quietly(self, call: Awaitable[Any], what: str) -> None:
        """Run a count that must not fail an admitted request (logged when lost)."""
        try:
            await self._bounded(call)
        except _STORAGE_ERRORS as exc:
            log.warning("rate limiter storage down (%s): %s not counted", exc, what)

    async def settle_prompt(self, key_id: str, *, tpm: int | None, tokens: int) -> None:
        """Correct the prompt tokens charged at admission by ``tokens`` (either sign).

        Admission counts the gateway's estimate; the model's own count arrives with
        its answer. A window already used is not given back: only a shortfall is charged
        (``tpm=None``: the usage counters only, :meth:`settle` does the window).
        """
        if tokens == 0:
            return
        if tokens > 0:
            await self._quietly(self._charge_tpm(key_id, tpm, tokens), "prompt tokens")
        await self._quietly(self._add_usage(key_id, prompt_tokens=tokens), "usage")

    async def _charge_tpm(self, key_id: str, tpm: int | None, tokens: int) -> None:
        if not tpm:
            return
        item = RateLimitItemPerMinute(tpm)
        if not await self._tpm_limiter.hit(item, "tpm", key_id, cost=tokens):
            # over budget mid-request: fill what is left of the window instead
            stats = await self._tpm_limiter.get_window_stats(item, "tpm", key_id)
            if stats.remaining > 0:
                await self._tpm_limiter.hit(item, "tpm", key_id, cost=stats.remaining)

    async def usage(self, key_id: str) -> LimitUsage:
        """Counters of ``key_id`` as this limiter's storage holds them."""
        if self._redis is None:
            return self._memory_usage.get(key_id, LimitUsage()).model_copy()
        raw: dict[Any, Any] = await self._redis.hgetall(_USAGE_PREFIX + key_id)  # type: ignore[misc]
        values = {k.decode(): int(v) for k, v in raw.items()}
        return LimitUsage(**values)

    async def _add_usage(
        self, key_id: str, *, requests: int = 0, prompt_tokens: int = 0, completion_tokens: int = 0
    ) -> None:
        counts = {
            "requests": requests,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
        }
        if self._redis is None:
            usage = self._memory_usage.setdefault(key_id, LimitUsage())
            for field, n in counts.items():
                setattr(usage, field, getattr(usage, field) + n)
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for field, n in counts.items():
                if n:
                    pipe.hincrby(_USAGE_PREFIX + key_id, field, n)
            await pipe.execute()

    @staticmethod
    async def _too_many(
        limiter: MovingWindowRateLimiter | SlidingWindowCounterRateLimiter,
        item: RateLimitItem,
        key_id: str,
        kind: str,
        limit: int,
    ) -> RequestRejectedError:
        stats = await limiter.get_window_stats(item, kind, key_id)
        retry_after = max(1.0, round(stats.reset_time - time.time(), 1))
        what = "requests" if kind == "rpm" else "tokens"
        return RequestRejectedError(
            429,
            f"rate limit reached: this key may use {limit} {what} per minute;"
            f" retry after {retry_after:.0f} s or ask for a higher --{kind}",
            code=f"{kind}_limit_exceeded",
            retry_after=retry_after,
        )
