"""What the model pool adds to a request: direct backend vs through ModelPool, side by side.

An instant in-process backend (no model: it yields N one-token chunks at once)
isolates the pool's own cost: slot, retry wrapper, health bookkeeping, and the
extra async-generator layers per chunk of ``PooledModel.stream`` (what a gateway
uses). Each round sends the same requests directly and through the pool,
alternating, at concurrency 1 and 32; medians of per-request latency are
compared, so drift from other processes hits both.

    PYTHONPATH=src python benchmarks/pool_overhead.py [--rounds 7] [--requests 200] [--chunks 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from llmpick.backends.base import (
    Backend,
    Chunk,
    GenerationRequest,
    ModelIdentity,
    Usage,
)
from llmpick.backends.pool import PooledModel, PoolOptions


class InstantBackend(Backend):
    """Answers at once with ``max_tokens`` one-token chunks."""

    name = "instant"
    is_local = False  # no own limit: the pool applies remote_concurrency

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        n = request.params.max_tokens
        for _ in range(n):
            await asyncio.sleep(0)  # hand the loop over, as a socket read would
            yield Chunk(text="x", time_s=time.perf_counter(), tokens=1)
        usage = Usage(prompt_tokens=1, completion_tokens=n)
        yield Chunk(time_s=time.perf_counter(), final=True, usage=usage, finish_reason="length")

    def describe(self) -> ModelIdentity:
        return ModelIdentity(backend=self.name, model=self.model)


async def timed(send: Callable[[], Awaitable[object]], requests: int, concurrency: int) -> float:
    """Median seconds per request with ``concurrency`` in flight."""
    latencies: list[float] = []
    left = list(range(requests))

    async def worker() -> None:
        while left:
            left.pop()
            start = time.perf_counter()
            await send()
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statistics.median(latencies)


async def main(rounds: int, requests: int, chunks: int) -> None:
    from llmpick.backends.spec import ModelSpec

    backend = InstantBackend("instant")
    spec = ModelSpec(name="instant", backend="instant", model="instant")
    model = PooledModel("instant", spec, backend, PoolOptions(remote_concurrency=32))
    request = GenerationRequest.from_prompt("hi", max_tokens=chunks)

    async def direct_once() -> None:
        async for _chunk in backend.generate(request):
            pass

    async def pooled_once() -> None:
        async for _chunk in model.stream(request):
            pass

    for concurrency in (1, 32):
        direct: list[float] = []
        pooled: list[float] = []
        for _ in range(rounds):
            direct.append(await timed(direct_once, requests, concurrency))
            pooled.append(await timed(pooled_once, requests, concurrency))
        d, p = statistics.median(direct), statistics.median(pooled)
        print(
            f"concurrency {concurrency:>2}, {chunks} chunks: direct p50 {d * 1e6:8.1f} us, "
            f"pool p50 {p * 1e6:8.1f} us, added {(p - d) * 1e6:7.1f} us "
            f"({(p - d) / chunks * 1e6:.2f} us/chunk), pool/direct {p / d:.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests, args.chunks))
