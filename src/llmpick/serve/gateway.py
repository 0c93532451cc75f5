"""The gateway's core, apart from HTTP: which model answers, and the answer itself.

:class:`Gateway` is a client of the model pool (it never opens a backend itself).
For each request it decides the route (:meth:`decide`), asks the security policy
to admit it, then streams from the route's models in order: a model that fails
*before* its first token, or that the pool reports failing, hands over to the next
one (a fallback, which the response reports); once tokens have been sent the
stream is the client's, and a failure ends it with an error event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmpick.backends.base import Chunk, GenerationRequest, Message, SamplingParams
from llmpick.backends.pool import ModelPool, PooledModel, PoolOptions
from llmpick.context import Context
from llmpick.errors import (
    BackendError,
    ContextLengthError,
    ModelNotFoundError,
    QueueFullError,
    UnsupportedRequestError,
    UpstreamTimeoutError,
)
from llmpick.serve.classifier import CategoryClassifier
from llmpick.serve.metrics import GatewayMetrics
from llmpick.serve.requestlog import RequestLog, RequestRecord
from llmpick.serve.routing import Decision, RouteTable
from llmpick.serve.security import KeyPrincipal, SecurityOptions, SecurityPolicy
from llmpick.textsize import conservative_tokens

__all__ = ["Answer", "Gateway", "GatewayConfig", "Prepared"]

AUTO = "auto"


class GatewayConfig(BaseModel):
    """How the gateway runs (``serve:`` in llmpick.yaml, overridden by CLI flags)."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: model specs or llmpick.yaml names to serve (routes add theirs)
    models: list[str] = Field(default_factory=list)
    routes_from: str | None = None
    default_max_tokens: int = Field(512, ge=1)
    #: below this classifier probability, ``auto`` uses the overall winner
    category_confidence: float = Field(0.5, ge=0.0, le=1.0)
    #: serve turns ``serving_defaults`` on (automatic batching slots for local models)
    #: unless ``pool.serving_defaults: false`` is set (serve.server._serving_pool)
    pool: PoolOptions = PoolOptions()
    security: SecurityOptions = SecurityOptions()
    allow_unauthenticated: bool = False
    #: names besides addresses and localhost that ``Host`` may carry (DNS rebinding check)
    allowed_hosts: list[str] = Field(default_factory=list)
    db: Path = Path("llmpick.db")
    #: HTTP parser and event loop (benchmarks/gateway_frontier.py measured them): "auto" takes
    #: httptools and uvloop when installed (they are dependencies), else h11 and asyncio
    http_parser: Literal["auto", "h11", "httptools"] = "auto"
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"


class Prepared(BaseModel):
    """A request ready to run: who asks, where it goes, what to generate."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    request_id: str
    endpoint: Literal["chat", "completions"]
    #: the model or route the client named (what a key's model list is checked against)
    requested: str
    started_at: float
    start_s: float
    principal: KeyPrincipal
    decision: Decision
    generation: GenerationRequest
    prompt_text: str
    prompt_tokens_estimate: int
    stream: bool
    include_usage: bool = False
    #: admission passed: tokens are reserved and settled when the request ends
    admitted: bool = False


class Answer:
    """An answer under way: the model that answers, its first chunk, the rest."""

    def __init__(
        self,
        model: PooledModel,
        first: Chunk,
        rest: AsyncIterator[Chunk],
        fallback_from: str | None,
    ) -> None:
        self.model = model
        self.first = first
        self.rest = rest
        self.fallback_from = fallback_from


class Gateway:
    """Pool, routes, classifier, policy, metrics and request log of one gateway process."""

    def __init__(
        self,
        context: Context,
        config: GatewayConfig,
        *,
        pool: ModelPool,
        policy: SecurityPolicy | None = None,
        routes: RouteTable | None = None,
        classifier: CategoryClassifier | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        self.context = context
        self.config = config
        self.pool = pool
        self.policy = policy
        self.routes = routes
        self.classifier = classifier
        self.request_log = request_log
        self.metrics = GatewayMetrics(pool)
        self.served: list[str] = []
        #: told, once per model opened at start, what its backend chose (slots, threads)
        self.announce: Callable[[str], None] | None = None

    async def start(self) -> None:
        """Open every served model once (configured ones, then the routes' models)."""
        for spec in self.config.models:
            model = await self.pool.open(spec)
            self._opened(model)
        if self.routes is not None:
            for name, route_spec in self.routes.specs.items():
                if name not in self.served:
                    self._opened(await self.pool.open(route_spec, name=name))

    def _opened(self, model: PooledModel) -> None:
        self.served.append(model.name)
        summary = model.backend.runtime_summary()
        if summary and self.announce is not None:
            self.announce(f"{model.name}: {summary}")

    async def aclose(self) -> None:
        """Flush the request log, close the policy and the pool."""
        if self.request_log is not None:
            await self.request_log.aclose()
        if self.policy is not None:
            await self.policy.close()
        await self.pool.aclose()

    # -- routing ---------------------------------------------------------------

    def route_names(self) -> dict[str, list[str]]:
        """Virtual model names and the models each resolves to, in order."""
        names = {AUTO: self._auto_order()}
        if self.routes is not None:
            for category, route in self.routes.categories.items():
                names[f"{AUTO}:{category}"] = route.models
        return names

    def _auto_order(self) -> list[str]:
        if self.routes is not None:
            return self.routes.overall.models
        return list(self.served)

    def decide(self, model: str, category: str | None, text: str) -> Decision:
        """The models that may answer a request on ``model``, best first, and why."""
        if model in self.served:
            return Decision(route=model, category=None, models=[model], reason="model named")
        route, _, suffix = model.partition(":")
        if route != AUTO:
            known = ", ".join([*self.served, *self.route_names()])
            raise ModelNotFoundError(
                f"the gateway serves no model or route named '{model}'",
                f"use one of: {known} (GET /v1/models lists them)",
            )
        if self.routes is None:
            return Decision(
                route=AUTO,
                category=None,
                models=self._auto_order(),
                reason="no measured routes; served models in order",
            )
        category = suffix or category
        if category:
            found = self.routes.categories.get(category)
            if found is None:
                known = ", ".join(sorted(self.routes.categories))
                raise ModelNotFoundError(
                    f"no route for category '{category}'", f"categories: {known}"
                )
            return Decision(
                route=AUTO, category=category, models=found.models, reason="category named"
            )
        return self._classified(text)

    def _classified(self, text: str) -> Decision:
        assert self.routes is not None
        overall = self.routes.overall.models
        guess = self.classifier.predict(text) if self.classifier is not None else None
        if guess is None or guess.category not in self.routes.categories:
            return Decision(route=AUTO, category=None, models=overall, reason="overall winner")
        if guess.confidence < self.config.category_confidence:
            return Decision(
                route=AUTO,
                category=None,
                models=overall,
                reason=f"classifier unsure ({guess.category} at {guess.confidence:.2f}); "
                "overall winner",
            )
        return Decision(
            route=AUTO,
            category=guess.category,
            models=self.routes.categories[guess.category].models,
            reason=f"classified as {guess.category} ({guess.confidence:.2f})",
        )

    # -- one request -------------------------------------------------------------

    def prepare(
        self,
        *,
        endpoint: Literal["chat", "completions"],
        model: str,
        messages: list[Message],
        params: SamplingParams,
        principal: KeyPrincipal,
        category: str | None,
        stream: bool,
        include_usage: bool = False,
        options: dict[str, Any] | None = None,
    ) -> Prepared:
        """Decide the route and build the generation request (``options``: tools, formats)."""
        start_s = time.perf_counter()
        users = [m.content for m in messages if m.role == "user"]
        decision = self.decide(model, category, users[-1] if users else "")
        prompt_text = "\n".join(m.content for m in messages)
        first = self.pool.get(decision.models[0])
        counted = first.count_tokens(prompt_text)
        estimate = counted if counted is not None else conservative_tokens(prompt_text)
        return Prepared(
            request_id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
            endpoint=endpoint,
            requested=model,
            started_at=time.time(),
            start_s=start_s,
            principal=principal,
            decision=decision,
            generation=GenerationRequest(
                messages=messages, params=params, stream=stream, **(options or {})
            ),
            prompt_text=prompt_text,
            prompt_tokens_estimate=estimate,
            stream=stream,
            include_usage=include_usage,
        )

    async def admit(self, prepared: Prepared) -> None:
        """The policy's token caps, model permission and RPM/TPM for this request."""
        if self.policy is not None:
            await self.policy.admit(
                prepared.principal,
                prepared.requested,
                prepared.prompt_tokens_estimate,
                prepared.generation.params.max_tokens,
            )
        prepared.admitted = True

    async def open_answer(self, prepared: Prepared) -> Answer:
        """Start the answer on the first model of the route that gives a first chunk."""
        models = self._able([self.pool.get(n) for n in prepared.decision.models], prepared)
        healthy = [m for m in models if m.health().state != "failing"] or models
        last: Exception | None = None
        for model in healthy:
            chunks = model.stream(prepared.generation).__aiter__()
            try:
                first = await chunks.__anext__()
            except StopAsyncIteration:
                first = Chunk(time_s=time.perf_counter(), final=True)
            except (ContextLengthError, UnsupportedRequestError):
                raise
            except QueueFullError as exc:  # overloaded: the route's next model may have room
                last = exc
                continue
            except BackendError as exc:
                self.metrics.upstream_errors.labels(model.name, type(exc).__name__).inc()
                last = exc
                continue
            fallback_from = models[0].name if model is not models[0] else None
            if fallback_from is not None:
                self.metrics.fallbacks.labels(
                    prepared.decision.route, fallback_from, model.name
                ).inc()
            return Answer(model, first, chunks, fallback_from)
        assert last is not None
        raise last

    @staticmethod
    def _able(models: list[PooledModel], prepared: Prepared) -> list[PooledModel]:
        """The route's models that can honour the request (tools, response_format), in order.

        None can: the first one's :class:`UnsupportedRequestError` (a 400), never a
        request with its tools silently dropped.
        """
        able, refusal = [], None
        for model in models:
            try:
                model.backend.check_request(prepared.generation)
            except UnsupportedRequestError as exc:
                refusal = refusal or exc
                continue
            able.append(model)
        if not able and refusal is not None:
            raise refusal
        return able

    async def on_tokens(self, prepared: Prepared, model: str, n: int) -> None:
        """Count streamed output against the key's TPM."""
        if self.policy is not None and n:
            await self.policy.on_output_tokens(prepared.principal, model, n)

    async def finish(
        self,
        prepared: Prepared,
        *,
        status: int,
        model: str | None,
        prompt_tokens: int | None,
        completion_tokens: int,
        first_token_s: float | None,
        output_text: str,
        error: BaseException | None = None,
        fallback_from: str | None = None,
    ) -> RequestRecord:
        """Metrics, the store's request log and the policy's access log for one request."""
        total = time.perf_counter() - prepared.start_s
        ttft = first_token_s - prepared.start_s if first_token_s is not None else None
        record = RequestRecord(
            request_id=prepared.request_id,
            started_at=prepared.started_at,
            endpoint=prepared.endpoint,
            key_name=prepared.principal.key_name,
            route=prepared.decision.route,
            category=prepared.decision.category,
            model=model,
            status=status,
            error_type=type(error).__name__ if error is not None else None,
            stream=prepared.stream,
            fallback_from=fallback_from,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            time_to_first_token_s=ttft,
            total_s=total,
        )
        if model is not None:
            self.metrics.observe(
                model=model,
                route=prepared.decision.route,
                status=status,
                total_s=total,
                ttft_s=ttft,
                prompt_tokens=prompt_tokens or 0,
                completion_tokens=completion_tokens,
            )
            if isinstance(error, BackendError) and not isinstance(error, UpstreamTimeoutError):
                self.metrics.upstream_errors.labels(model, type(error).__name__).inc()
        if self.request_log is not None:
            self.request_log.add(record)
        if self.policy is not None:
            if prepared.admitted:
                await self.policy.settle(
                    prepared.principal,
                    prompt_estimate=prepared.prompt_tokens_estimate,
                    prompt_counted=prompt_tokens,
                    output_reserved=prepared.generation.params.max_tokens or 0,
                    output_used=completion_tokens,
                )
            await self.policy.on_finish(record, prepared.prompt_text, output_text)
        return record
