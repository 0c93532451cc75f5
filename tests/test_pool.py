"""The model pool with real models: bundled SmolLM2 in-process, llama.cpp's server on loopback."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import start_llama_server
from llmpick.backends.base import GenerationRequest, RetryPolicy
from llmpick.backends.pool import ModelPool, PoolOptions
from llmpick.context import Context
from llmpick.errors import (
    ConfigError,
    ContextLengthError,
    EndpointUnreachableError,
    ModelFileError,
    ModelNotFoundError,
    QueueFullError,
    RateLimitError,
    UpstreamServerError,
)

SMOL = "smollm2-135m-instruct"


def on_a_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body with asyncio.run (each test on its own fresh loop)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def ask(text: str = "Name a colour.", max_tokens: int = 8) -> GenerationRequest:
    return GenerationRequest.from_prompt(text, temperature=0, max_tokens=max_tokens)


@pytest.mark.slow
@on_a_loop
async def test_local_model_loads_once_and_answers(context: Context) -> None:
    async with context.pool() as pool:
        first, second = await asyncio.gather(pool.open(SMOL), pool.open(SMOL))
        assert first is second and pool.models() == [first], "one load shared"
        assert pool.get(SMOL) is first
        # a batching llamacpp backend takes as many requests as it has slots
        slots = first.backend.parallel  # type: ignore[attr-defined]
        assert first.concurrency == first.backend.max_concurrency() == slots >= 1
        generation = await first.generate(
            ask("What is the capital of France? Answer in one word.", 16)
        )
        assert "Paris" in generation.output
        assert generation.usage.source == "backend"
        assert first.count_tokens("hello world") == first.backend.count_tokens("hello world")
        assert first.context_length() == 4096
        assert first.identity().backend == "llamacpp"
        health = await first.check()
        assert health.state == "ready" and health.in_flight == 0 and health.concurrency == slots
        with pytest.raises(ModelNotFoundError, match="no open model called 'other'"):
            pool.get("other")
        with pytest.raises(ConfigError, match="already used"):
            await pool.open("column:answer", name=SMOL)
    assert pool.models() == []


@pytest.mark.slow
@on_a_loop
async def test_bounded_queue_and_cancellation_release_slots(context: Context) -> None:
    async with context.pool(PoolOptions(max_queue=1)) as pool:
        spec = context.resolve(SMOL)
        # one slot (no batching), so that a third request finds the queue full
        model = await pool.open(
            spec.model_copy(update={"options": {**spec.options, "parallel": 1}})
        )

        async def drain() -> str:
            return "".join([c.text async for c in model.stream(ask(max_tokens=24))])

        results = await asyncio.gather(*(drain() for _ in range(3)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, QueueFullError)]
        assert len(refused) == 1, results
        assert "1 requests running and 1 waiting" in refused[0].message
        assert all(isinstance(r, str) and r for r in results if r not in refused)
        # a client that goes away after the first chunk gives its slot back
        stream = model.stream(ask(max_tokens=64))
        await anext(stream)
        assert model.in_flight == 1
        await stream.aclose()
        assert (model.in_flight, model.queued) == (0, 0)
        # a waiter cancelled in the queue leaves it
        holder = model.stream(ask(max_tokens=64))
        await anext(holder)
        waiter = asyncio.ensure_future(model.generate(ask()))
        await asyncio.sleep(0.05)
        assert model.queued == 1
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert model.queued == 0
        await holder.aclose()
        assert (await model.generate(ask())).output
        # errors about the request do not make the model unhealthy
        with pytest.raises(ContextLengthError):
            await model.generate(ask("word " * 5000))
        assert model.health().state == "ready"


@on_a_loop
async def test_failed_load_is_reported(context: Context, tmp_path: Path) -> None:
    pool = context.pool()
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"nope")
    with pytest.raises(ModelFileError):
        await pool.open(f"llamacpp:{bad}")
    (health,) = pool.health()
    assert health.state == "failing" and "not a GGUF file" in (health.last_error or "")
    await pool.aclose()


@pytest.mark.slow
@pytest.mark.network
@on_a_loop
async def test_remote_concurrency_limit_health_and_check(
    context: Context, smollm2_path: Path
) -> None:
    proc, url = start_llama_server(smollm2_path)
    try:
        pool = ModelPool(context, PoolOptions(remote_concurrency=2))
        model = await pool.open(f"openai:smollm2@{url}")
        assert model.concurrency == 2 and model.backend.max_concurrency() is None
        assert (await model.check()).state == "ready"
        seen: list[tuple[int, int]] = []

        async def one() -> str:
            text = ""
            async for chunk in model.stream(ask(max_tokens=6)):
                seen.append((model.in_flight, model.queued))
                text += chunk.text
            return text

        answers = await asyncio.gather(*(one() for _ in range(5)))
        assert all(answers)
        assert max(f for f, _ in seen) <= 2 and max(q for _, q in seen) >= 1
        proc.kill()
        proc.wait(10)
        for expected_state in ("ready", "ready", "failing"):
            with pytest.raises(EndpointUnreachableError):
                await model.generate(ask(), retries=False)
            assert model.health().state == expected_state
        health = await model.check()
        assert health.state == "failing" and "cannot connect" in (health.last_error or "")
        assert [h.state for h in pool.health()] == ["failing"]
        await pool.aclose()
    finally:
        proc.kill()
        proc.wait(10)


class _Flaky(BaseHTTPRequestHandler):
    """Answers 429 (Retry-After: 1) then 503, then a real SSE stream."""

    calls: list[float] = []  # noqa: RUF012 - reset by the fixture

    def log_message(self, *args: object) -> None:
        pass

    def _status(self, code: int, retry_after: str | None = None) -> None:
        self.send_response(code)
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.calls.append(time.monotonic())
        n = len(self.calls) % 3
        if n == 1:
            return self._status(429, "1")
        if n == 2:
            return self._status(503)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        for piece in ("Pa", "ris"):
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            self.wfile.write(f"data: {json.dumps({**base, 'choices': [delta]})}\n\n".encode())
        usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        event = {**base, "choices": [], "usage": usage}
        self.wfile.write(f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture()
def flaky_server() -> Iterator[str]:
    _Flaky.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@on_a_loop
async def test_retries_follow_the_backends_policy(context: Context, flaky_server: str) -> None:
    async with ModelPool(context) as pool:
        model = await pool.open(f"openai:m@{flaky_server}")
        policy = model.backend.retry_policy()
        assert policy.max_retries == 3 and RateLimitError in policy.retry_on
        generation = await model.generate(ask())
        assert generation.output == "Paris"
        assert generation.usage.completion_tokens == 2 and generation.usage.source == "backend"
        calls = _Flaky.calls
        assert len(calls) == 3
        assert calls[1] - calls[0] >= 0.9, "waited for Retry-After: 1"
        # measurements send exactly one request
        with pytest.raises(RateLimitError, match="answered 429"):
            await model.generate(ask(), retries=False)
        with pytest.raises(UpstreamServerError, match="answered 503"):
            await model.generate(ask(), retries=False)
        assert len(_Flaky.calls) == 5
        assert model.health().consecutive_failures == 1, "a 429 is not the model's fault"


def test_backoff_schedule_honours_retry_after() -> None:
    policy = RetryPolicy(retry_on=(RateLimitError,), max_retries=2, jitter=0.0)
    limited = RateLimitError("429")
    assert policy.should_retry(limited, 1) and not policy.should_retry(limited, 2)
    assert not policy.should_retry(ContextLengthError("long"), 0)
    assert [policy.delay_s(limited, n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    limited.retry_after_s = 3.0
    assert policy.delay_s(limited, 0) == 3.0
    limited.retry_after_s = 3600.0  # beyond what is worth waiting: back off normally
    assert policy.delay_s(limited, 1) == 1.0


@pytest.mark.slow
@on_a_loop
async def test_serving_defaults_batch_local_models_and_eval_keeps_one(context: Context) -> None:
    """serve/bench open a bundled GGUF with automatic slots; eval's pool keeps one sequence."""
    async with context.pool(PoolOptions(serving_defaults=True)) as pool:
        model = await pool.open(SMOL)
        backend: Any = model.backend
        assert backend.opts.parallel is None and backend.parallel >= 2
        assert model.concurrency == backend.parallel
        summary = backend.runtime_summary()
        assert f"{backend.parallel} slot(s) (automatic)" in summary and "KV cache ~" in summary
        identity = model.identity()
        assert identity.n_threads == backend.n_threads >= 1
        # an option the spec sets wins over the serving default
        spec = context.resolve(SMOL)
        pinned = spec.model_copy(update={"options": {**spec.options, "parallel": 1}})
        one = await pool.open(pinned, name="pinned")
        assert one.backend.parallel == 1  # type: ignore[attr-defined]
        # threads are not part of the cache key: outputs of the same model stay shared
        assert one.identity().key() == identity.key()
    async with context.pool() as pool:
        plain = await pool.open(SMOL)
        assert plain.backend.parallel == 1  # type: ignore[attr-defined]
