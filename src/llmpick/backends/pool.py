"""The model pool: the one owner of running models, for every command and the gateway.

``ModelPool(context)`` opens each model once (loading runs in a thread, and
callers asking for the same model at once share one load), hands out
:class:`PooledModel` handles, and closes everything in :meth:`ModelPool.aclose`.
Each model has a concurrency limit (the backend's own ``max_concurrency()``,
else ``PoolOptions.remote_concurrency``) and a bounded FIFO wait queue: a
request that finds the queue full fails at once with :class:`QueueFullError`,
so memory never grows with load. Retries follow the backend's declared
:class:`~llmpick.backends.base.RetryPolicy`, and only before the first chunk
of an answer was passed on. Health (``loading``, ``ready``, ``failing``)
follows the answers: ``failure_threshold`` consecutive failures make a model
``failing``; a success, or a passing :meth:`PooledModel.check`, makes it
``ready`` again.

The pool holds no loop-bound asyncio primitive, so one pool can serve several
``asyncio.run`` calls one after another (``choose`` evaluates, then benches).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncGenerator
from typing import Any, Literal, Protocol

import psutil
from pydantic import BaseModel, ConfigDict, Field

from llmpick.backends.base import (
    Backend,
    Chunk,
    Generation,
    GenerationRequest,
    ModelIdentity,
    RetryPolicy,
    collect_stream,
)
from llmpick.backends.spec import ModelSpec
from llmpick.errors import (
    ConfigError,
    ContextLengthError,
    LlmpickError,
    ModelNotFoundError,
    QueueFullError,
    RateLimitError,
)
from llmpick.registry import Registry

__all__ = ["ModelHealth", "ModelOpener", "ModelPool", "PoolOptions", "PooledModel"]

HealthState = Literal["unloaded", "loading", "ready", "failing"]

#: errors that say something about the request or the load, not about the model's health
_NOT_THE_MODELS_FAULT = (ContextLengthError, QueueFullError, RateLimitError)
_NO_RETRIES = RetryPolicy()


class PoolOptions(BaseModel):
    """Limits of a model pool."""

    model_config = ConfigDict(extra="forbid")

    #: requests waiting per model beyond its concurrency; more fail with QueueFullError
    max_queue: int = Field(64, ge=0)
    #: requests in flight per model whose backend sets no limit of its own (HTTP upstreams)
    remote_concurrency: int = Field(8, ge=1)
    #: consecutive failures after which a model is reported ``failing``
    failure_threshold: int = Field(3, ge=1)
    #: open models with their backend's ``serving_options`` where the spec sets none
    #: (local GGUF models get automatic batching slots): on for ``serve`` and ``bench``,
    #: off for ``eval``, whose outputs then do not depend on concurrent traffic
    serving_defaults: bool = False


class ModelHealth(BaseModel):
    """What the pool knows about one model right now."""

    name: str
    backend: str
    model: str
    state: HealthState
    last_error: str | None = None
    consecutive_failures: int = 0
    in_flight: int = 0
    queued: int = 0
    concurrency: int = 0
    #: one entry per server when the model has several ``base_urls`` (ReplicaState)
    replicas: list[dict[str, Any]] = Field(default_factory=list)


class _Slots:
    """A counting limit with a bounded FIFO of waiters, bound to no event loop."""

    def __init__(self, limit: int, max_queue: int) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self, name: str) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise QueueFullError(
                f"model {name} is busy: {self.in_flight} requests running and "
                f"{len(self._waiters)} waiting (the most it queues)"
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self.in_flight -= 1


class PooledModel:
    """One open model of a pool: limited, retried, health-tracked access to its backend."""

    def __init__(self, name: str, spec: ModelSpec, backend: Backend, options: PoolOptions) -> None:
        self.name = name
        self.spec = spec
        self.backend = backend
        self._options = options
        own = backend.max_concurrency()
        limit = own if own is not None else options.remote_concurrency
        self._slots = _Slots(limit, options.max_queue)
        self._state: HealthState = "ready"
        self._last_error: str | None = None
        self._failures = 0
        self._identity: ModelIdentity | None = None
        #: resident memory this process grew by while loading the model (in-process
        #: backends), None when unknown (another load overlapped it)
        self.load_rss_bytes: int | None = None

    @property
    def concurrency(self) -> int:
        """Requests this model serves at once."""
        return self._slots.limit

    @property
    def in_flight(self) -> int:
        """Requests being answered now."""
        return self._slots.in_flight

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return self._slots.queued

    def identity(self) -> ModelIdentity:
        """The backend's identity of the model (computed once)."""
        if self._identity is None:
            self._identity = self.backend.describe()
        return self._identity

    def count_tokens(self, text: str) -> int | None:
        """Tokens in ``text`` by the model's tokenizer, or None if unknown."""
        return self.backend.count_tokens(text)

    def context_length(self) -> int | None:
        """The model's context window, or None if unknown."""
        return self.backend.context_length()

    def health(self) -> ModelHealth:
        """State, last error and load of this model."""
        return ModelHealth(
            name=self.name,
            backend=self.spec.backend,
            model=self.spec.model,
            state=self._state,
            last_error=self._last_error,
            consecutive_failures=self._failures,
            in_flight=self.in_flight,
            queued=self.queued,
            concurrency=self.concurrency,
            replicas=[r.model_dump() for r in self.backend.replica_states()],
        )

    async def check(self) -> ModelHealth:
        """Probe the model actively (an HTTP upstream: GET /models) and update its health."""
        try:
            await self.backend.probe()
        except LlmpickError as exc:
            self._failed(exc, force=True)
        else:
            self._succeeded()
        return self.health()

    def stream(
        self, request: GenerationRequest, *, retries: bool = True
    ) -> AsyncGenerator[Chunk, None]:
        """Stream the answer once a slot is free.

        Raises :class:`QueueFullError` at once when the wait queue is full.
        With ``retries=False`` exactly one request is sent (measurements).
        Closing the stream early (a client that went away) releases the slot.
        """
        return self._attempts(request, retries, take_slot=True)

    async def generate(self, request: GenerationRequest, *, retries: bool = True) -> Generation:
        """The whole answer; its timing starts when a slot was obtained (not queueing)."""
        await self._slots.acquire(self.name)
        held = [True]  # the attempts give the slot up while they back off
        try:
            chunks = self._attempts(request, retries, take_slot=False, held=held)
            async with contextlib.aclosing(chunks):
                return await collect_stream(chunks)
        finally:
            if held[0]:
                self._slots.release()

    async def _attempts(
        self,
        request: GenerationRequest,
        retries: bool,
        take_slot: bool,
        held: list[bool] | None = None,
    ) -> AsyncGenerator[Chunk, None]:
        # one generator layer between the backend and the caller: it costs per chunk
        held = held if held is not None else [False]
        if take_slot:
            await self._slots.acquire(self.name)
            held[0] = True
        try:
            policy = self.backend.retry_policy() if retries else _NO_RETRIES
            send = self.backend.generate if retries else self.backend.generate_once
            done = 0
            while True:
                started = False
                try:
                    async with contextlib.aclosing(send(request)) as chunks:  # type: ignore[type-var]
                        async for chunk in chunks:
                            started = True
                            yield chunk
                except Exception as exc:
                    if not started and policy.should_retry(exc, done):
                        # back off without the slot: another request may use it meanwhile
                        if held[0]:
                            self._slots.release()
                            held[0] = False
                        await asyncio.sleep(policy.delay_s(exc, done))
                        await self._slots.acquire(self.name)
                        held[0] = True
                        done += 1
                        continue
                    self._failed(exc)
                    raise
                self._succeeded()
                return
        finally:
            if take_slot and held[0]:
                self._slots.release()
                held[0] = False

    def _succeeded(self) -> None:
        self._failures = 0
        self._state = "ready"

    def _failed(self, exc: BaseException, force: bool = False) -> None:
        text = exc.one_line() if isinstance(exc, LlmpickError) else f"{type(exc).__name__}: {exc}"
        self._last_error = text
        if isinstance(exc, _NOT_THE_MODELS_FAULT) and not force:
            return
        self._failures += 1
        if force or self._failures >= self._options.failure_threshold:
            self._state = "failing"


class ModelOpener(Protocol):
    """What the pool needs to open a model: :class:`llmpick.context.Context` is one.

    A protocol, so the pool does not import the context that builds pools.
    """

    backends: Registry[type[Backend]]

    def resolve(self, spec: str) -> ModelSpec:
        """Resolve a ``-m`` value."""
        ...

    def open_backend(self, spec: str | ModelSpec) -> Backend:
        """Construct the backend for ``spec`` (loading the model)."""
        ...


class ModelPool:
    """Opens models once, shares them, limits and retries their requests, tracks health."""

    def __init__(self, context: ModelOpener, options: PoolOptions | None = None) -> None:
        self.context = context
        self.options = options or PoolOptions()
        self._models: dict[str, PooledModel] = {}
        self._loading: dict[str, tuple[ModelSpec, asyncio.Task[PooledModel]]] = {}
        self._failed_loads: dict[str, ModelHealth] = {}
        self._overlapped: set[str] = set()

    async def __aenter__(self) -> ModelPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self, spec: str | ModelSpec, *, name: str | None = None) -> PooledModel:
        """The model for ``spec``, loading it (in a thread) unless it is open or loading."""
        resolved = self.context.resolve(spec) if isinstance(spec, str) else spec
        if self.options.serving_defaults:
            resolved = self._with_serving_options(resolved)
        name = name or resolved.name
        if name in self._models:
            model = self._models[name]
            _check_same(name, model.spec, resolved)
            return model
        if name in self._loading:
            loading_spec, task = self._loading[name]
            _check_same(name, loading_spec, resolved)
        else:
            task = asyncio.ensure_future(self._load(name, resolved))
            self._loading[name] = (resolved, task)
        return await asyncio.shield(task)

    def _with_serving_options(self, spec: ModelSpec) -> ModelSpec:
        defaults = self.context.backends.get(spec.backend).serving_options
        missing = {k: v for k, v in defaults.items() if k not in spec.options}
        if not missing:
            return spec
        return spec.model_copy(update={"options": {**missing, **spec.options}})

    async def _load(self, name: str, spec: ModelSpec) -> PooledModel:
        if len(self._loading) > 1:
            self._overlapped.update(self._loading)
        rss_before = _rss_bytes()
        try:
            backend = await asyncio.to_thread(self.context.open_backend, spec)
        except BaseException as exc:
            self._failed_loads[name] = ModelHealth(
                name=name,
                backend=spec.backend,
                model=spec.model,
                state="failing",
                last_error=exc.one_line() if isinstance(exc, LlmpickError) else repr(exc),
                consecutive_failures=1,
            )
            raise
        finally:
            self._loading.pop(name, None)
        self._failed_loads.pop(name, None)
        model = PooledModel(name, spec, backend, self.options)
        if name not in self._overlapped:
            model.load_rss_bytes = max(0, _rss_bytes() - rss_before)
        self._overlapped.discard(name)
        self._models[name] = model
        return model

    def get(self, name: str) -> PooledModel:
        """The open model called ``name``; :class:`ModelNotFoundError` if none is."""
        try:
            return self._models[name]
        except KeyError:
            known = ", ".join(self._models) or "none"
            raise ModelNotFoundError(
                f"no open model called '{name}'", f"open models: {known}"
            ) from None

    def models(self) -> list[PooledModel]:
        """The open models, in the order they were loaded."""
        return list(self._models.values())

    def health(self) -> list[ModelHealth]:
        """Health of every model the pool has opened, is loading, or failed to load."""
        found = [m.health() for m in self._models.values()]
        for name, (spec, _task) in self._loading.items():
            found.append(
                ModelHealth(name=name, backend=spec.backend, model=spec.model, state="loading")
            )
        found.extend(self._failed_loads.values())
        return found

    async def close(self, name: str) -> None:
        """Close one open model and forget it (its memory is freed)."""
        model = self._models.pop(name, None)
        if model is not None:
            model._state = "unloaded"
            with contextlib.suppress(Exception):
                await model.backend.aclose()

    async def aclose(self) -> None:
        """Close every model (waiting for loads in progress first)."""
        for _spec, task in list(self._loading.values()):
            with contextlib.suppress(BaseException):
                await task
        for name in list(self._models):
            await self.close(name)


def _rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


def _check_same(name: str, have: ModelSpec, want: ModelSpec) -> None:
    if (have.backend, have.model, have.options) != (want.backend, want.model, want.options):
        raise ConfigError(
            f"the name '{name}' is already used by another model in this pool",
            "give each model its own name",
        )
