"""Run a benchmark of one model: load it, warm it up, drive each load point, measure.

``run_bench(context, "smollm2-135m-instruct", BenchConfig(concurrency=(1, 2)))``
returns a :class:`~llmpick.bench.results.BenchResult`. Ctrl-C stops it; the
requests that finished are kept and raised inside :class:`BenchInterrupted`
(a ``KeyboardInterrupt``), so the CLI can print and store them.

Choices that shape the numbers:

- Requests ask for ``max_tokens`` with end-of-sequence ignored where the
  backend allows (llama.cpp in-process; servers that accept ``ignore_eos``,
  such as vLLM). Otherwise N is whatever the model produced, reported as is.
- Requests go through the model pool with retries off (``retries=False``):
  a retried request would hide a failure inside a longer latency.
- A model serves as many requests at once as its backend allows (one for a
  single-sequence in-process model); higher concurrency or a rate queues
  requests in the pool (see :mod:`llmpick.bench.load`), and a note says so.
  A pool of the bench's own never limits an HTTP server below the load asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmpick.backends.base import GenerationRequest
from llmpick.backends.pool import ModelPool, PooledModel, PoolOptions
from llmpick.backends.spec import ModelSpec
from llmpick.bench.estimate import calibrate_fit, device_label, fit_estimate
from llmpick.bench.load import LoadPoint, RequestFactory, closed_loop, open_loop, send_request
from llmpick.bench.memory import MemoryReport, MemorySampler, server_memory_metrics
from llmpick.bench.metrics import RequestTiming, Slo, aggregate, output_tokens
from llmpick.bench.prompts import (
    TokenCounter,
    load_dataset_prompts,
    synthetic_prompt,
    token_counter_for,
)
from llmpick.bench.results import BenchResult, LoadResult
from llmpick.context import Context
from llmpick.errors import BackendError, UsageError

__all__ = ["BenchConfig", "BenchInterrupted", "config_summary", "run_bench"]


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a benchmark; ``result`` holds what finished (may be None)."""

    def __init__(self, result: BenchResult | None) -> None:
        super().__init__("benchmark interrupted")
        self.result = result


@dataclass
class BenchConfig:
    """What to measure. Invalid values raise :class:`UsageError` on construction.

    With neither ``concurrency`` nor ``rates`` given, one closed-loop point at
    concurrency 1 is run. ``requests`` is per load point; ``warmup`` requests
    run once per model before the first point and are not measured.
    """

    concurrency: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()
    prompt_tokens: int = 128
    max_tokens: int = 64
    requests: int = 8
    warmup: int = 1
    dataset: Path | None = None
    slo: Slo = field(default_factory=Slo)
    tokenizer: Path | None = None
    ignore_eos: bool = True
    seed: int = 0
    progress: Callable[[str], None] | None = None
    #: store measured/estimated speed factors for fit on this machine
    calibrate: bool = False

    def __post_init__(self) -> None:
        self.concurrency = tuple(self.concurrency)
        self.rates = tuple(self.rates)
        self.load_points()  # validates concurrency and rates
        if self.requests < 1:
            raise UsageError(f"--requests must be at least 1, got {self.requests}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if self.dataset is None and self.prompt_tokens < 1:
            raise UsageError(f"--prompt-tokens must be at least 1, got {self.prompt_tokens}")

    def load_points(self) -> list[LoadPoint]:
        """Closed-loop points first, then Poisson rates."""
        points = [LoadPoint(concurrency=c) for c in self.concurrency]
        points += [LoadPoint(rate=r) for r in self.rates]
        return points or [LoadPoint(concurrency=1)]


def _pool_options(config: BenchConfig) -> PoolOptions:
    """A pool that queues every request of a point and never caps a server below the load.

    Local models open as ``serve`` opens them (serving defaults: automatic batching slots),
    so bench measures what serve would do.
    """
    most = max([config.requests, *config.concurrency])
    return PoolOptions(remote_concurrency=most, max_queue=most, serving_defaults=True)


def _count_earlier_load(
    memory: MemoryReport, load_rss_bytes: int | None
) -> tuple[MemoryReport, str]:
    """Add the RSS growth of a load the pool did before the bench started."""
    if load_rss_bytes is None:
        return memory, (
            "the model was loaded before the bench, alongside another: peak memory counts "
            "only its growth while serving"
        )
    baseline = max(0, memory.baseline_rss_bytes - load_rss_bytes)
    return dataclasses.replace(memory, baseline_rss_bytes=baseline), (
        "the model was loaded before the bench: peak memory is the growth measured while "
        "it loaded plus the growth while serving"
    )


def _peak_in_flight(config: BenchConfig) -> int:
    """The most requests a load point may have in flight (a rate: all of them)."""
    return max(p.concurrency or config.requests for p in config.load_points())


class _Run:
    """Mutable state of one model's run, readable after an interrupt."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.done: list[LoadResult] = []
        self.point: LoadPoint | None = None
        self.sink: list[RequestTiming] = []
        self.server: dict[str, float] = {}
        self.polling = True
        self.closed = False

    def tell(self, message: str) -> None:
        if self.config.progress is not None:
            self.config.progress(message)

    def finish_point(self, counter: TokenCounter, partial: bool) -> None:
        if self.point is None:
            return
        if self.sink:
            self.done.append(
                LoadResult(
                    point=self.point,
                    metrics=aggregate(self.sink, self.config.slo),
                    timings=list(self.sink),
                    slo=self.config.slo,
                    interrupted=partial,
                    token_mismatches=_mismatches(self.sink, counter),
                )
            )
        self.point = None
        self.sink = []


def _mismatches(timings: list[RequestTiming], counter: TokenCounter) -> int:
    """Count requests whose output token count differs from the local tokenizer's."""
    count = 0
    for timing in timings:
        if not timing.ok:
            continue
        n = output_tokens(timing)
        local = counter.content_tokens(timing.text)
        # re-tokenising decoded text may merge or split a token at the edges
        if abs(local - n) > max(2, 0.05 * n):
            count += 1
    return count


async def _poll_server(run: _Run, base_url: str, stop: asyncio.Event) -> None:
    while run.polling and not stop.is_set():
        found = await asyncio.to_thread(server_memory_metrics, base_url)
        if found is None:
            run.polling = False
            return
        for key, value in found.items():
            run.server[key] = max(run.server.get(key, value), value)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _drive(
    run: _Run,
    model: PooledModel,
    make_request: RequestFactory,
    counter: TokenCounter,
) -> None:
    config = run.config
    backend = model.backend
    warmup_errors: list[str] = []
    for i in range(config.warmup):
        run.tell(f"warm-up {i + 1}/{config.warmup}")
        request, _ = make_request(-1 - i)
        timing = await send_request(model, request)
        if timing.error:
            warmup_errors.append(timing.error)
    if config.warmup and len(warmup_errors) == config.warmup:
        raise BackendError(
            f"every warm-up request failed: {warmup_errors[-1]}",
            "check that the model answers (llmpick run -m MODEL 'hi'); --warmup 0 measures "
            "failures as errors instead",
        )
    base_url = None if backend.is_local else backend.describe().base_url
    offset = 0
    for point in config.load_points():
        run.point = point
        run.sink = _ProgressList(run, point, config.requests)
        stop = asyncio.Event()
        poller = (
            asyncio.create_task(_poll_server(run, base_url, stop))
            if base_url and run.polling
            else None
        )

        def make(index: int, _offset: int = offset) -> tuple[GenerationRequest, int | None]:
            return make_request(_offset + index)

        try:
            if point.concurrency is not None:
                await closed_loop(model, make, config.requests, point.concurrency, run.sink)
            else:
                assert point.rate is not None
                await open_loop(model, make, config.requests, point.rate, run.sink, config.seed)
        finally:
            stop.set()
            if poller is not None:
                with contextlib.suppress(Exception):
                    await poller
        run.finish_point(counter, partial=False)
        offset += config.requests


class _ProgressList(list[RequestTiming]):
    """A sink that reports each finished request."""

    def __init__(self, run: _Run, point: LoadPoint, total: int) -> None:
        super().__init__()
        self._run = run
        self._label = f"{point.label}: "
        self._total = total

    def append(self, timing: RequestTiming) -> None:
        super().append(timing)
        state = "ok" if timing.ok else f"error: {timing.error}"
        self._run.tell(f"{self._label}{len(self)}/{self._total} done ({state})")


def run_bench(
    context: Context,
    model_spec: str | ModelSpec,
    config: BenchConfig,
    pool: ModelPool | None = None,
) -> BenchResult:
    """Benchmark one model under every load point of ``config``.

    The model is opened in ``pool`` (and left open there) or in a pool of the
    bench's own, closed at the end. Raises :class:`UsageError` when the prompt
    cannot fit the context window, and :class:`BenchInterrupted` (carrying the
    partial result) on Ctrl-C.
    """
    spec = context.resolve(model_spec) if isinstance(model_spec, str) else model_spec
    cls = context.backends.get(spec.backend)
    sampler = MemorySampler() if cls.is_local else None
    if sampler is not None:
        sampler.start()
    run = _Run(config)
    own_pool = pool is None
    models = pool if pool is not None else ModelPool(context, _pool_options(config))
    result: BenchResult | None = None
    preloaded = any(m.name == spec.name for m in models.models())
    try:
        model = asyncio.run(models.open(spec))
        backend = model.backend
        notes: list[str] = []
        counter = token_counter_for(backend, config.tokenizer)
        if not counter.exact:
            notes.append(
                f"token counts for prompts from {counter.source}: the backend has no tokenizer"
                "; give --tokenizer GGUF for exact counts"
            )
        window = backend.context_length()
        prompts: list[str] | None = None
        typical_prompt_tokens = config.prompt_tokens
        if config.dataset is not None:
            prompts = load_dataset_prompts(config.dataset)
            lengths = [counter.content_tokens(p) for p in prompts]
            longest = max(lengths)
            typical_prompt_tokens = round(sum(lengths) / len(lengths))
            if window is not None and longest >= window:
                raise UsageError(
                    f"a prompt in {config.dataset} has {longest} tokens but {spec.name} "
                    f"runs with a context of {window}",
                    "shorten the prompts or raise the model's n_ctx",
                )
        elif window is not None and config.prompt_tokens + config.max_tokens > window:
            raise UsageError(
                f"--prompt-tokens {config.prompt_tokens} plus --max-tokens {config.max_tokens} "
                f"do not fit the context of {window} tokens of {spec.name}",
                "lower --prompt-tokens or --max-tokens, or raise the model's n_ctx",
            )
        if _peak_in_flight(config) > model.concurrency:
            where = "runs in this process and " if backend.is_local else "is limited by the pool: "
            at_once = "one request" if model.concurrency == 1 else f"{model.concurrency} requests"
            notes.append(
                f"{spec.name} {where}serves {at_once} at a time: requests beyond that in "
                "flight were queued, and their TTFT and E2E include the wait"
                + (
                    "; give the model more parallel slots to measure continuous batching"
                    if backend.is_local
                    else ""
                )
            )
        if config.ignore_eos:
            notes.append(
                "end-of-sequence was ignored where the backend allows it; N is the measured "
                "output token count either way"
            )
        cache: dict[int, str] = {}

        def prompt_for(index: int) -> str:
            if prompts is not None:
                return prompts[index % len(prompts)]
            if index not in cache:
                cache[index] = synthetic_prompt(
                    counter, config.prompt_tokens, seed=config.seed * 1_000_003 + index
                )
            return cache[index]

        def make_request(index: int) -> tuple[GenerationRequest, int | None]:
            text = prompt_for(index)
            request = GenerationRequest.from_prompt(
                text,
                max_tokens=config.max_tokens,
                temperature=0.0,
                seed=config.seed,
                ignore_eos=config.ignore_eos,
            )
            known = config.prompt_tokens if prompts is None else counter.content_tokens(text)
            return request, known

        result = BenchResult(
            model=spec.name,
            backend=spec.backend,
            identity=backend.describe().model_dump(),
            device="",
            memory=None,
            server_metrics=None,
            estimate=None,
            notes=notes,
            prompt_tokens=None if prompts is not None else config.prompt_tokens,
            max_tokens=config.max_tokens,
            token_counter=counter.source,
        )

        async def main() -> None:
            try:
                await _drive(run, model, make_request, counter)
            finally:
                run.closed = True
                if own_pool:
                    await models.aclose()

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            run.finish_point(counter, partial=True)
            result.interrupted = True
            raise
        finally:
            result.results = run.done
            memory = sampler.stop() if sampler is not None else None
            if memory is not None and preloaded:
                memory, note = _count_earlier_load(memory, model.load_rss_bytes)
                result.notes.append(note)
            result.memory = memory
            result.device = device_label(backend, memory)
            result.server_metrics = run.server or None
            if any(t.ok and t.completion_tokens is None for r in run.done for t in r.timings):
                result.notes.append(
                    "the backend reported no token usage: output tokens are counted as "
                    f"streamed chunks, prompt tokens by {counter.source} on the message text "
                    "(chat template tokens not included)"
                )
            unstreamed = sum(
                1
                for r in run.done
                for t in r.timings
                if t.ok and output_tokens(t) > 1 and len(t.chunk_times_s) == 1
            )
            if unstreamed:
                result.notes.append(
                    f"{unstreamed} replies arrived in one piece (not streamed): their TTFT is "
                    "their E2E and they add no ITL samples; a llama-cpp-python server needs "
                    "--interrupt_requests False to serve concurrent requests"
                )
            mismatched = sum(r.token_mismatches for r in run.done)
            if mismatched:
                result.notes.append(
                    f"{mismatched} replies had a backend token count that differs from "
                    f"{counter.source}'s count of their text by more than 5%"
                )
        estimate, why = fit_estimate(spec, backend, window, typical_prompt_tokens)
        result.estimate = estimate
        if why:
            result.notes.append(why)
        if config.calibrate:
            result.notes.append(calibrate_fit(spec, backend, window, typical_prompt_tokens, result))
        return result
    except KeyboardInterrupt:
        raise BenchInterrupted(result) from None
    finally:
        if sampler is not None and sampler.running:
            sampler.stop()
        if own_pool and not run.closed:
            with contextlib.suppress(Exception):
                asyncio.run(models.aclose())


def config_summary(config: BenchConfig) -> dict[str, Any]:
    """Return the settings of ``config`` as plain JSON values (stored with results)."""
    return {
        "concurrency": list(config.concurrency),
        "rates": list(config.rates),
        "prompt_tokens": config.prompt_tokens,
        "max_tokens": config.max_tokens,
        "requests": config.requests,
        "warmup": config.warmup,
        "dataset": str(config.dataset) if config.dataset else None,
        "slo": {
            "time_to_first_token_s": config.slo.time_to_first_token_s,
            "time_per_output_token_s": config.slo.time_per_output_token_s,
            "e2e_latency_s": config.slo.e2e_latency_s,
        },
        "tokenizer": str(config.tokenizer) if config.tokenizer else None,
        "ignore_eos": config.ignore_eos,
        "seed": config.seed,
    }
