"""Load generation: closed-loop fixed concurrency and open-loop Poisson arrivals.

Closed loop (``concurrency=C``): C workers each send a request, wait for the
whole answer, and send the next, until K requests are done. This answers
"how fast at batch C". Open loop (``rate=R``): K requests are sent at
Poisson-distributed times (exponential gaps with mean 1 / R seconds) whether or
not earlier ones finished, as independent users would; latency then includes
any queueing the server does.

Requests go through the model pool with retries off (one request each). A
model serves ``model.concurrency`` requests at once (one for a single-sequence
in-process backend), so requests beyond that wait in the pool's queue, in
arrival order. Their send time is when they joined the queue, so TTFT and E2E
include the wait, as a client of a server with that many slots would see it.
The bench result says so in its ``notes``.

Each finished request is appended to a caller-owned list as soon as it ends,
so an interrupted run keeps what finished.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmpick.backends.base import GenerationRequest
from llmpick.backends.pool import PooledModel
from llmpick.bench.metrics import RequestTiming
from llmpick.errors import LlmpickError, UsageError

__all__ = [
    "LoadPoint",
    "RequestFactory",
    "closed_loop",
    "open_loop",
    "poisson_arrivals",
    "send_request",
]


@dataclass(frozen=True)
class LoadPoint:
    """One load setting: a fixed concurrency or a Poisson rate (requests/s)."""

    concurrency: int | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise UsageError("a load point needs exactly one of concurrency and rate")
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError(
                f"concurrency must be at least 1, got {self.concurrency}",
                "give positive integers, e.g. --concurrency 1,8",
            )
        if self.rate is not None and not self.rate > 0:
            raise UsageError(
                f"rate must be a positive number of requests per second, got {self.rate}",
                "e.g. --rate 2.5",
            )

    @property
    def label(self) -> str:
        """``concurrency=C`` or ``rate=R/s``."""
        if self.concurrency is not None:
            return f"concurrency={self.concurrency}"
        return f"rate={self.rate:g}/s"


async def send_request(
    model: PooledModel, request: GenerationRequest, prompt_tokens: int | None = None
) -> RequestTiming:
    """Send one request (no retries) and time it; a failure becomes a timing with ``error``.

    The send time is taken before waiting for one of the model's slots.
    ``prompt_tokens`` is used when the backend reports no prompt count.
    """
    start = time.perf_counter()
    times: list[float] = []
    counts: list[int] = []
    parts: list[str] = []
    completion: int | None = None
    prompt: int | None = None
    end = start
    error: str | None = None
    try:
        async for chunk in model.stream(request, retries=False):
            end = chunk.time_s
            if chunk.tokens or chunk.text:
                times.append(chunk.time_s)
                counts.append(chunk.tokens)
                parts.append(chunk.text)
            if chunk.final and chunk.usage is not None:
                prompt = chunk.usage.prompt_tokens
                if chunk.usage.source == "backend":
                    completion = chunk.usage.completion_tokens
    except LlmpickError as exc:
        error = exc.one_line()
        end = time.perf_counter()
    except Exception as exc:  # a failed request is a measurement, not a crash
        error = f"{type(exc).__name__}: {exc}"
        end = time.perf_counter()
    return RequestTiming(
        start_s=start,
        end_s=max(end, times[-1] if times else start),
        chunk_times_s=tuple(times),
        chunk_tokens=tuple(counts),
        completion_tokens=completion,
        prompt_tokens=prompt if prompt is not None else prompt_tokens,
        error=error,
        text="".join(parts),
    )


#: index -> (request, prompt tokens known locally or None)
RequestFactory = Callable[[int], tuple[GenerationRequest, int | None]]


async def closed_loop(
    model: PooledModel,
    make_request: RequestFactory,
    requests: int,
    concurrency: int,
    sink: list[RequestTiming],
) -> list[RequestTiming]:
    """Send ``requests`` requests keeping ``concurrency`` in flight; return their timings."""
    if concurrency < 1:
        raise UsageError(f"concurrency must be at least 1, got {concurrency}")
    queue = list(range(requests))
    queue.reverse()
    mine: list[RequestTiming] = []

    async def worker() -> None:
        while queue:
            index = queue.pop()
            request, prompt_tokens = make_request(index)
            timing = await send_request(model, request, prompt_tokens)
            sink.append(timing)
            mine.append(timing)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, requests)):
            group.create_task(worker())
    return mine


def poisson_arrivals(rate: float, count: int, seed: int = 0) -> list[float]:
    """Offsets in seconds of ``count`` Poisson arrivals at ``rate`` per second, from 0."""
    rng = random.Random(seed)
    offsets: list[float] = []
    t = 0.0
    for i in range(count):
        if i:
            t += rng.expovariate(rate)
        offsets.append(t)
    return offsets


async def open_loop(
    model: PooledModel,
    make_request: RequestFactory,
    requests: int,
    rate: float,
    sink: list[RequestTiming],
    seed: int = 0,
) -> list[RequestTiming]:
    """Send ``requests`` requests at Poisson times with mean ``rate`` per second."""
    offsets: Sequence[float] = poisson_arrivals(rate, requests, seed)
    mine: list[RequestTiming] = []
    origin = time.perf_counter()

    async def one(index: int, offset: float) -> None:
        delay = origin + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        request, prompt_tokens = make_request(index)
        timing = await send_request(model, request, prompt_tokens)
        sink.append(timing)
        mine.append(timing)

    async with asyncio.TaskGroup() as group:
        for index, offset in enumerate(offsets):
            group.create_task(one(index, offset))
    return mine
