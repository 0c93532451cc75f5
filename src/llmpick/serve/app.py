"""The gateway's FastAPI app: OpenAI-compatible routes, health, readiness, metrics.

``create_app(gateway, workbench)`` builds the app, with the workbench
(``llmpick.ui``) mounted under its prefix when given (``llmpick serve --ui``);
the security policy's middlewares (keys, body size) are installed here when
the gateway has a policy. Every error is OpenAI-shaped
(:mod:`llmpick.serve.errors`); the ``x-llmpick-route`` header says which route,
category and model answered, and why.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from llmpick.backends.base import Chunk, Message, SamplingParams
from llmpick.errors import RequestRejectedError
from llmpick.hostcheck import HostPolicy
from llmpick.jsonbody import OrjsonRoute
from llmpick.serve.disconnect import ClientGone, unless_disconnected
from llmpick.serve.errors import error_payload, install_error_handlers, status_of
from llmpick.serve.gateway import Answer, Gateway, Prepared
from llmpick.serve.readiness import HealthProber, readiness
from llmpick.serve.refusals import RECORDED, RefusalRecorder, note_refusal
from llmpick.serve.schemas import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    ModelEntry,
    ModelList,
    UsageOut,
    apply_rules,
)
from llmpick.serve.security import KeyPrincipal, install
from llmpick.serve.tools import Collected, chat_delta, generation_options, message_out, to_message
from llmpick.ui import Workbench, mount_workbench

__all__ = ["create_app"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in [
        (400, "bad request, prompt too long for the context, or over a request limit"),
        (401, "missing, unknown, expired or revoked API key"),
        (404, "unknown model or route"),
        (413, "request body too large"),
        (429, "over the key's rate limit (Retry-After says when to retry)"),
        (503, "model overloaded (queue full) or no healthy model"),
        (504, "the answer took longer than allowed"),
    ]
}
# a streamed answer (``stream: true``) is server-sent events, not JSON
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the answer (JSON), or with ``stream: true`` server-sent events",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
Kind = Literal["chat", "completions"]


class _Collected:
    """What a finished (or broken) stream produced."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.tokens = 0
        self.first_s: float | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.finish_reason: str | None = None
        self.extra = Collected()  # reasoning and tool calls (serve/tools.py)

    def text(self) -> str:
        return "".join(self.parts)


def _params(body: ChatCompletionRequest | CompletionRequest, gateway: Gateway) -> SamplingParams:
    default = gateway.config.default_max_tokens
    cap = gateway.policy.rules.max_output_tokens if gateway.policy is not None else None
    # a request that names no max_tokens gets the default, within the cap (never a 400)
    return SamplingParams(
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        max_tokens=body.output_limit() or min(default, cap or default),
        seed=body.seed,
        stop=body.stops(),
        ignore_eos=body.ignore_eos,
    )


async def _principal(gateway: Gateway, request: Request) -> KeyPrincipal:
    if gateway.policy is None:
        return KeyPrincipal()
    return await gateway.policy.authenticate(request)


def _usage(prepared: Prepared, got: _Collected) -> UsageOut:
    prompt = got.prompt_tokens if got.prompt_tokens is not None else prepared.prompt_tokens_estimate
    completion = got.completion_tokens if got.completion_tokens is not None else got.tokens
    return UsageOut(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


async def _texts(
    gateway: Gateway, prepared: Prepared, answer: Answer, got: _Collected, deadline: float | None
) -> AsyncIterator[Chunk]:
    """The answer's chunks with output (first chunk included), recorded in ``got``.

    The time limit applies to each wait for the next chunk, never across a
    ``yield`` (the caller may be sending bytes then).
    """
    chunk = answer.first
    while True:
        if chunk.text or chunk.tokens or chunk.reasoning or chunk.tool_calls:
            got.first_s = got.first_s or chunk.time_s
            got.parts.append(chunk.text)
            got.extra.add(chunk)
            got.tokens += chunk.tokens
            await gateway.on_tokens(prepared, answer.model.name, chunk.tokens)
            yield chunk
        if chunk.final:
            if chunk.usage is not None:
                got.prompt_tokens = chunk.usage.prompt_tokens
                got.completion_tokens = chunk.usage.completion_tokens
            got.finish_reason = chunk.finish_reason
            return
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await answer.rest.__anext__()
        except StopAsyncIteration:
            return


def _deadline(gateway: Gateway, prepared: Prepared) -> float | None:
    limit = gateway.policy.rules.total_timeout_s if gateway.policy is not None else None
    if limit is None:
        return None
    return asyncio.get_running_loop().time() + limit - (time.perf_counter() - prepared.start_s)


def _timeout_error(gateway: Gateway) -> RequestRejectedError:
    limit = gateway.policy.rules.total_timeout_s if gateway.policy is not None else 0
    return RequestRejectedError(
        504,
        f"the request took longer than the gateway's limit of {limit:g} s:"
        " ask for fewer tokens (max_tokens) or retry later",
        code="timeout",
    )


async def _run(gateway: Gateway, prepared: Prepared, kind: Kind, request: Request) -> Response:
    deadline = _deadline(gateway, prepared)
    try:
        # the deadline covers admission too (a stalled limiter cannot hold a request)
        async with asyncio.timeout_at(deadline):
            await gateway.admit(prepared)
    except TimeoutError:
        raise _timeout_error(gateway) from None
    setattr(request.state, RECORDED, True)  # from here on the lifecycle records it
    try:
        async with asyncio.timeout_at(deadline):
            answer = await unless_disconnected(request, gateway.open_answer(prepared))
    except Exception as exc:
        error = _timeout_error(gateway) if isinstance(exc, TimeoutError) else exc
        gone = isinstance(exc, ClientGone)
        await gateway.finish(
            prepared,
            status=_CLIENT_CLOSED if gone else status_of(error),
            model=prepared.decision.models[0],
            prompt_tokens=None,
            completion_tokens=0,
            first_token_s=None,
            output_text="",
            error=None if gone else error,
        )
        if gone:
            return Response(status_code=_CLIENT_CLOSED)
        raise error from None
    route = prepared.decision.header() + f"; model={answer.model.name}"
    if answer.fallback_from:
        route += f"; fallback_from={answer.fallback_from}"
    headers = {"x-llmpick-route": route, "x-llmpick-model": answer.model.name}
    if prepared.stream:
        return StreamingResponse(
            _sse(gateway, prepared, answer, kind, deadline),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )
    got = _Collected()

    async def collect() -> None:
        async for _ in _texts(gateway, prepared, answer, got, deadline):
            pass

    try:
        await unless_disconnected(request, collect())  # nobody waits: stop, free the slot
    except ClientGone:
        await _finish(gateway, prepared, answer, got, _CLIENT_CLOSED, None)
        return Response(status_code=_CLIENT_CLOSED)
    except Exception as exc:
        error = _timeout_error(gateway) if isinstance(exc, TimeoutError) else exc
        await _finish(gateway, prepared, answer, got, status_of(error), error)
        raise error from None
    finally:
        await answer.rest.aclose()  # type: ignore[attr-defined]
    usage = _usage(prepared, got)
    await _finish(gateway, prepared, answer, got, 200, None)
    return JSONResponse(_document(prepared, answer, got, usage, kind), headers=headers)


async def _finish(
    gateway: Gateway,
    prepared: Prepared,
    answer: Answer,
    got: _Collected,
    status: int,
    error: BaseException | None,
) -> None:
    usage = _usage(prepared, got)
    await gateway.finish(
        prepared,
        status=status,
        model=answer.model.name,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        first_token_s=got.first_s,
        output_text=got.text(),
        error=error,
        fallback_from=answer.fallback_from,
    )


def _document(
    prepared: Prepared, answer: Answer, got: _Collected, usage: UsageOut, kind: Kind
) -> dict[str, Any]:
    finish = got.finish_reason or "stop"
    if kind == "chat":
        return ChatCompletion(
            id=prepared.request_id,
            model=answer.model.name,
            choices=[ChatChoice(message=message_out(got.text(), got.extra), finish_reason=finish)],
            usage=usage,
        ).model_dump(mode="json")
    return CompletionResponse(
        id=prepared.request_id.replace("chatcmpl", "cmpl"),
        model=answer.model.name,
        choices=[CompletionChoice(text=got.text(), finish_reason=finish)],
        usage=usage,
    ).model_dump(mode="json")


_CLIENT_CLOSED = 499  # nginx's code for "client closed the connection": logged, never sent


def _event(doc: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(doc, ensure_ascii=False).encode() + b"\n\n"


def _chunk(
    prepared: Prepared,
    model: str,
    kind: Kind,
    text: str | None,
    finish: str | None,
    delta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    base = {"id": prepared.request_id, "created": int(prepared.started_at), "model": model}
    if kind == "chat":
        if delta is None:
            delta = {} if text is None else {"content": text}
        if text == "" and finish is None:
            delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {**base, "object": "chat.completion.chunk", "choices": [choice]}
    choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
    return {**base, "object": "text_completion", "choices": [choice]}


async def _sse(
    gateway: Gateway, prepared: Prepared, answer: Answer, kind: Kind, deadline: float | None
) -> AsyncIterator[bytes]:
    """SSE of one answer; a failure after the first byte ends it with an error event.

    A client that goes away cancels this generator: ``finally`` closes the
    model's stream, which frees its slot in the pool.
    """
    got = _Collected()
    name = answer.model.name
    status, error = 200, None
    try:
        if kind == "chat":
            yield _event(_chunk(prepared, name, kind, "", None))
        async for chunk in _texts(gateway, prepared, answer, got, deadline):
            if kind == "completions":
                yield _event(_chunk(prepared, name, kind, chunk.text, None))
            elif (delta := chat_delta(chunk)) is not None:
                yield _event(_chunk(prepared, name, kind, None, None, delta))
        yield _event(_chunk(prepared, name, kind, None, got.finish_reason or "stop"))
    except Exception as exc:
        error = _timeout_error(gateway) if isinstance(exc, TimeoutError) else exc
        status = status_of(error)
        yield _event(error_payload(error))
    except (asyncio.CancelledError, GeneratorExit):
        status = _CLIENT_CLOSED
        raise
    finally:
        # shielded: a client that hung up cancels this task, and the record (usage
        # in the store, the access log) must still be written
        with anyio.CancelScope(shield=True):
            await answer.rest.aclose()  # type: ignore[attr-defined]
            await _finish(gateway, prepared, answer, got, status, error)
    if error is None and prepared.include_usage:
        usage = _usage(prepared, got)
        doc = {
            **_chunk(prepared, name, kind, None, None),
            "choices": [],
            "usage": usage.model_dump(),
        }
        yield _event(doc)
    yield b"data: [DONE]\n\n"


def _openai_router() -> APIRouter:
    router = APIRouter(route_class=OrjsonRoute, prefix="/v1", responses=_ERRORS)

    @router.post(
        "/chat/completions", response_model=ChatCompletion, responses=_STREAMED, tags=["openai"]
    )
    async def chat_completions(
        body: ChatCompletionRequest,
        request: Request,
        x_llmpick_category: str | None = Header(None),
    ) -> Response:
        """Chat completion (streaming with ``stream: true``) on a model or a route."""
        gateway: Gateway = request.app.state.gateway
        principal = await _principal(gateway, request)
        if gateway.policy is not None:
            gateway.policy.rules.check_messages([m.model_dump() for m in body.messages])
            gateway.policy.rules.check_stop(body.stop)
        messages = [to_message(m) for m in body.messages]
        prepared = gateway.prepare(
            endpoint="chat",
            model=body.model,
            messages=messages,
            params=_params(body, gateway),
            principal=principal,
            category=x_llmpick_category or (body.metadata or {}).get("category"),
            stream=body.stream,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
            options=generation_options(body),
        )
        request.state.llmpick_prepared = prepared
        return await _run(gateway, prepared, "chat", request)

    @router.post(
        "/completions", response_model=CompletionResponse, responses=_STREAMED, tags=["openai"]
    )
    async def completions(
        body: CompletionRequest,
        request: Request,
        x_llmpick_category: str | None = Header(None),
    ) -> Response:
        """Plain-prompt completion, answered through the model's chat template."""
        gateway: Gateway = request.app.state.gateway
        principal = await _principal(gateway, request)
        if gateway.policy is not None:
            gateway.policy.rules.check_prompt(body.prompt)
            gateway.policy.rules.check_stop(body.stop)
        prepared = gateway.prepare(
            endpoint="completions",
            model=body.model,
            messages=[Message(role="user", content=body.prompt)],
            params=_params(body, gateway),
            principal=principal,
            category=x_llmpick_category or (body.metadata or {}).get("category"),
            stream=body.stream,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
        )
        request.state.llmpick_prepared = prepared
        return await _run(gateway, prepared, "completions", request)

    @router.get("/models", response_model=ModelList, tags=["openai"])
    async def list_models(request: Request) -> ModelList:
        """Served models, and routes (``auto``…) with the models they resolve to."""
        gateway: Gateway = request.app.state.gateway
        data = [ModelEntry(id=name, kind="model", resolves_to=[name]) for name in gateway.served]
        for route, models in gateway.route_names().items():
            data.append(ModelEntry(id=route, kind="route", resolves_to=models))
        return ModelList(data=data)

    return router


def _ops_router() -> APIRouter:
    router = APIRouter(route_class=OrjsonRoute, tags=["operations"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        """Ready, degraded or unavailable; model names and states (details with a key)."""
        body, code = await readiness(request.app.state.gateway, request)
        return JSONResponse(body, status_code=code)

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus exposition format."""
        gateway: Gateway = request.app.state.gateway
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    return router


def create_app(gateway: Gateway, workbench: Workbench | None = None) -> FastAPI:
    """The gateway app; models open when it starts and close when it stops.

    With ``workbench`` (``llmpick serve --ui``) the workbench's pages are mounted
    under its prefix; its jobs stop before the pool they share closes.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        prober = HealthProber(gateway)
        prober.start()
        try:
            yield
        finally:
            await prober.aclose()
            if workbench is not None:
                await workbench.aclose()
            await gateway.aclose()

    app = FastAPI(
        title="llmpick gateway",
        summary="OpenAI-compatible API that routes each request to the model measurements chose",
        version="1",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    if gateway.policy is not None:
        install(
            app,
            gateway.policy,
            larger=workbench.larger_bodies() if workbench is not None else None,
            hosts=HostPolicy(gateway.config.host, gateway.config.allowed_hosts),
            on_refusal=note_refusal,
        )
    app.add_middleware(RefusalRecorder, gateway=gateway)
    app.include_router(_openai_router())
    app.include_router(_ops_router())
    _describe_what_is_accepted(app, gateway)
    if workbench is not None:
        app.state.workbench = workbench
        mount_workbench(app, workbench)
    return app


def _describe_what_is_accepted(app: FastAPI, gateway: Gateway) -> None:
    """``/openapi.json`` as the server behaves.

    No 422 (invalid bodies are 400s), and the configured request rules
    (:func:`llmpick.serve.schemas.apply_rules`).
    """
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = default()
            for path in doc.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                doc.get("components", {}).get("schemas", {}).pop(name, None)
            if gateway.policy is not None:
                apply_rules(doc, gateway.policy.rules)
        return app.openapi_schema or default()

    app.openapi = openapi  # type: ignore[method-assign]
