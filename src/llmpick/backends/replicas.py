"""Several replicas of one model behind one backend: least outstanding, passive health.

A model entry in ``llmpick.yaml`` may list ``base_urls`` (several servers running
the same weights, e.g. N vLLM instances); :class:`ReplicaSet` then stands for them:

- each request goes to the healthy replica with the fewest requests in flight
  (ties go round-robin);
- a replica that fails (cannot be reached, breaks the connection, answers 5xx,
  times out) is taken out for ``cooldown_s`` and tried again after it (passive
  health: no probes, real traffic decides);
- a request whose replica fails before any output was streamed is retried once on
  another replica; once output has reached the client it cannot be retried, and
  the error goes to the caller.

Errors that would be the same on every replica (prompt too long, bad key, unknown
model) are passed through without taking the replica out.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from pydantic import BaseModel

from llmpick.backends.base import (
    Backend,
    Chunk,
    GenerationRequest,
    ModelIdentity,
    RetryPolicy,
)
from llmpick.errors import (
    AuthenticationError,
    BackendError,
    ContextLengthError,
    ModelUnavailableError,
    QueueFullError,
)

__all__ = ["ReplicaSet", "ReplicaState"]

# failures of the request itself, not of the replica that answered it
_NOT_REPLICA_FAULTS = (ContextLengthError, AuthenticationError, QueueFullError)


class ReplicaState(BaseModel):
    """One replica as ``/ready`` shows it."""

    base_url: str | None
    outstanding: int
    served: int
    healthy: bool
    cooldown_left_s: float
    failures: int
    last_error: str | None = None


@dataclass
class _Replica:
    backend: Backend
    outstanding: int = 0
    served: int = 0
    down_until: float = 0.0
    failures: int = 0
    last_error: str | None = None


class ReplicaSet(Backend):
    """Replicas of one model, chosen by fewest outstanding requests."""

    name = "replicas"
    is_local = False

    def __init__(
        self,
        replicas: list[Backend],
        *,
        cooldown_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not replicas:
            raise ValueError("a replica set needs at least one replica")
        super().__init__(replicas[0].model, replicas[0].options)
        self.supports_seed = replicas[0].supports_seed  # type: ignore[misc]
        self._replicas = [_Replica(r) for r in replicas]
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._turn = itertools.count()

    def check_request(self, request: GenerationRequest) -> None:
        """What the replicas can honour (the same server, so the first one's answer)."""
        self._replicas[0].backend.check_request(request)

    def describe(self) -> ModelIdentity:
        """The first replica's identity with every base URL (same weights on each)."""
        first = self._replicas[0].backend.describe()
        urls = [r.backend.describe().base_url or "" for r in self._replicas]
        return first.model_copy(update={"base_url": ",".join(urls)})

    def max_concurrency(self) -> int | None:
        """No own limit: the sum of what the replicas allow, when each has one."""
        limits = [r.backend.max_concurrency() for r in self._replicas]
        return None if any(n is None for n in limits) else sum(n or 0 for n in limits)

    def count_tokens(self, text: str) -> int | None:
        """Tokens by the first replica's tokenizer (same weights everywhere)."""
        return self._replicas[0].backend.count_tokens(text)

    def context_length(self) -> int | None:
        """The first replica's context window."""
        return self._replicas[0].backend.context_length()

    def states(self) -> list[ReplicaState]:
        """Every replica's load and health."""
        now = self._clock()
        return [
            ReplicaState(
                base_url=r.backend.describe().base_url,
                outstanding=r.outstanding,
                served=r.served,
                healthy=r.down_until <= now,
                cooldown_left_s=round(max(0.0, r.down_until - now), 3),
                failures=r.failures,
                last_error=r.last_error,
            )
            for r in self._replicas
        ]

    def replica_states(self) -> list[BaseModel]:
        """:meth:`states`, for the pool's health."""
        return list(self.states())

    def _choose(self, exclude: set[int]) -> int:
        now = self._clock()
        candidates = [
            i for i, r in enumerate(self._replicas) if i not in exclude and r.down_until <= now
        ]
        if not candidates:
            waits = [r.down_until - now for i, r in enumerate(self._replicas) if i not in exclude]
            raise ModelUnavailableError(
                f"every replica of {self.model} failed recently",
                f"the next one is retried in {max(0.0, min(waits, default=0.0)):.1f} s",
            )
        least = min(self._replicas[i].outstanding for i in candidates)
        tied = [i for i in candidates if self._replicas[i].outstanding == least]
        return tied[next(self._turn) % len(tied)]

    def retry_policy(self) -> RetryPolicy:
        """The replicas' own policy (failing over to another replica comes first)."""
        return self._replicas[0].backend.retry_policy()

    async def probe(self) -> None:
        """Probe every replica; failing ones cool down; raise only if none answers."""
        results = await asyncio.gather(
            *(r.backend.probe() for r in self._replicas), return_exceptions=True
        )
        errors = []
        for replica, result in zip(self._replicas, results, strict=True):
            if isinstance(result, BackendError):
                self._mark_failed(replica, result)
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                replica.down_until = 0.0
        if len(errors) == len(self._replicas):
            raise errors[0]

    def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Stream from the least-loaded replica; retry once elsewhere before any output."""
        return self._generate(request, once=False)

    def generate_once(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Like :meth:`generate`, with each replica's own ``generate_once`` (measurements)."""
        return self._generate(request, once=True)

    def _mark_failed(self, replica: _Replica, exc: BackendError) -> None:
        replica.down_until = self._clock() + self.cooldown_s
        replica.failures += 1
        replica.last_error = exc.message

    async def _generate(self, request: GenerationRequest, *, once: bool) -> AsyncIterator[Chunk]:
        tried: set[int] = set()
        index = self._choose(tried)
        while True:
            tried.add(index)
            replica = self._replicas[index]
            streamed = False
            replica.outstanding += 1
            try:
                backend = replica.backend
                stream = backend.generate_once(request) if once else backend.generate(request)
                try:
                    async for chunk in stream:
                        streamed = streamed or bool(chunk.text or chunk.tokens)
                        if chunk.final:
                            # counted here: a caller may close the stream at its final chunk
                            replica.failures = 0
                            replica.served += 1
                        yield chunk
                finally:
                    # close the replica's stream now, not when it is collected
                    close = getattr(stream, "aclose", None)
                    if close is not None:
                        await close()
                return
            except _NOT_REPLICA_FAULTS:
                raise
            except BackendError as exc:
                self._mark_failed(replica, exc)
                if streamed or len(tried) > 1:
                    raise
                try:
                    index = self._choose(tried)
                except ModelUnavailableError:
                    raise exc from None
            finally:
                replica.outstanding -= 1

    async def aclose(self) -> None:
        """Close every replica."""
        for r in self._replicas:
            await r.backend.aclose()
