"""The ``openai`` backend: any OpenAI-compatible chat completions server.

vLLM, Ollama, TGI, llama.cpp's server and hosted providers all speak this
protocol. Responses are streamed with ``stream_options.include_usage`` so the
server's own token counts are recorded when it reports them; otherwise each
streamed content delta counts as one token (``usage.source == "chunks"``).

The SDK's own retries are off: the backend declares its :class:`RetryPolicy`
(429, 408/409/5xx, unreachable, timed out; ``max_retries`` of them, backoff
honouring ``Retry-After``) and the model pool applies it. The API
key is read from the environment variable named by ``api_key_env``; with
none named, a placeholder key is sent (local servers ignore it) and
``OPENAI_API_KEY`` is deliberately not forwarded to arbitrary URLs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import importlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
from pydantic import Field

from llmpick.backends.base import (
    Backend,
    BackendOptions,
    Chunk,
    GenerationRequest,
    ModelIdentity,
    RetryPolicy,
    Usage,
)
from llmpick.backends.tools import ToolCallDelta
from llmpick.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ContextLengthError,
    EndpointUnreachableError,
    ModelNotFoundError,
    RateLimitError,
    UnsupportedRequestError,
    UpstreamServerError,
    UpstreamTimeoutError,
)

__all__ = ["OpenAIBackend", "OpenAIOptions"]

_CONTEXT_WORDS = ("context length", "context window", "maximum context", "too long", "exceed")
_TRANSIENT_STATUS = (408, 409)


def _transport_errors() -> tuple[type[Exception], ...]:
    """What a broken connection raises while a stream is read.

    httpx's ``HTTPError`` and that of the HTTP library the SDK itself runs on
    (openai 3 uses its fork, httpx2, whose errors are not httpx's).
    """
    sdk_client = next(
        c for c in openai.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient"
    )
    sdk_http = importlib.import_module(sdk_client.__module__.partition(".")[0])
    return tuple({httpx.HTTPError, getattr(sdk_http, "HTTPError", httpx.HTTPError)})


_BROKEN_STREAM = _transport_errors()
_UNREADABLE: tuple[type[Exception], ...] = (*_BROKEN_STREAM, ValueError)  # or not JSON


def _retry_after_s(headers: Any) -> float | None:
    """Seconds asked for by ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``."""
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return float(millis) / 1000.0
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, (when - dt.datetime.now(when.tzinfo)).total_seconds())
    except (TypeError, ValueError):
        return None


class OpenAIOptions(BackendOptions):
    """Options of the openai backend."""

    base_url: str = Field(..., description="e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, description="environment variable holding the key")
    timeout_s: float = Field(600.0, gt=0, description="whole-request timeout")
    connect_timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(
        3, ge=0, description="retries on 408/409/429/5xx, timeouts and refused connections"
    )
    include_usage: bool = Field(True, description="ask for usage in the stream")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="sent as-is")
    structured_output: bool = Field(
        True,
        description="the server honours tools and response_format (passed through unchanged); "
        "false: requests with them are refused with a 400 instead of sent",
    )
    unstreamed_retry: bool = Field(
        True,
        description="when a stream closes empty, ask once more without streaming to learn "
        "the server's error (benchmarks turn this off)",
    )


class OpenAIBackend(Backend):
    """A model served behind an OpenAI-compatible HTTP API."""

    name = "openai"
    is_local = False
    supports_seed = True
    #: passed through to the server, unless its options say it cannot (structured_output)
    supports_tools = True
    supports_response_format = True
    Options = OpenAIOptions

    def __init__(self, model: str, options: BackendOptions | None = None) -> None:
        super().__init__(model, options)
        opts = self.options
        assert isinstance(opts, OpenAIOptions)
        self.opts = opts
        if opts.api_key_env:
            key = os.environ.get(opts.api_key_env)
            if not key:
                raise ConfigError(
                    f"environment variable {opts.api_key_env} is not set",
                    f"export {opts.api_key_env}=YOUR_KEY before running",
                )
        else:
            key = "no-key"
        self._api_key = key
        self._client: openai.AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _get_client(self) -> openai.AsyncOpenAI:
        """The HTTP client of the running event loop (connections are per loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = openai.AsyncOpenAI(
                base_url=self.opts.base_url,
                api_key=self._api_key,
                timeout=openai.Timeout(self.opts.timeout_s, connect=self.opts.connect_timeout_s),
                # retries are the model pool's, per retry_policy()
                max_retries=0,
            )
            self._client_loop = loop
        return self._client

    def check_request(self, request: GenerationRequest) -> None:
        """Refuse tools and response_format for a server declared without them."""
        if self.opts.structured_output:
            return
        for wanted, param in (
            (request.wants_tools(), "tools"),
            (request.wants_json(), "response_format"),
        ):
            if wanted:
                raise UnsupportedRequestError(
                    f"{self.model} at {self.opts.base_url} is declared without {param} support "
                    "(structured_output: false)",
                    "send the request to a model that supports it, or drop " + param,
                    param=param,
                )

    def describe(self) -> ModelIdentity:
        """Backend, served model name and base URL."""
        return ModelIdentity(backend=self.name, model=self.model, base_url=self.opts.base_url)

    def retry_policy(self) -> RetryPolicy:
        """Retry rate limits, transient statuses, timeouts and refused connections."""
        return RetryPolicy(
            retry_on=(
                RateLimitError,
                UpstreamServerError,
                UpstreamTimeoutError,
                EndpointUnreachableError,
            ),
            max_retries=self.opts.max_retries,
        )

    async def probe(self) -> None:
        """GET {base_url}/models: the server answers and accepts the key."""
        client = self._get_client().with_options(
            timeout=min(self.opts.timeout_s, 10.0), max_retries=0
        )
        try:
            await client.models.list()
        except openai.OpenAIError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> BackendError | ModelNotFoundError:
        error = self._translate_status(exc)
        if isinstance(error, BackendError):
            response = getattr(exc, "response", None)
            error.retry_after_s = _retry_after_s(getattr(response, "headers", None))
        return error

    def _translate_status(self, exc: Exception) -> BackendError | ModelNotFoundError:
        where = f"{self.model} at {self.opts.base_url}"
        if isinstance(exc, openai.APITimeoutError):
            return UpstreamTimeoutError(
                f"request to {where} timed out", "raise timeout_s or check the server's load"
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = type(exc.__cause__).__name__ if exc.__cause__ else ""
            if cause in ("ConnectError", "ConnectTimeout", "") or "Connect" in cause:
                return EndpointUnreachableError(
                    f"cannot connect to {self.opts.base_url}",
                    "start the server or fix base_url (it usually ends in /v1)",
                )
            return BackendError(
                f"{where}: the server broke the connection without answering ({cause})",
                "llama-cpp-python's server does this when the prompt exceeds its context "
                "window; check the prompt length and the server's log",
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            env = self.opts.api_key_env
            return AuthenticationError(
                f"{self.opts.base_url} refused the API key ({exc.status_code})",
                f"check the key in ${env}" if env else "set api_key_env for this model",
            )
        if isinstance(exc, openai.RateLimitError):
            return RateLimitError(
                f"{where} answered 429 (rate limited)", "lower --concurrency or raise max_retries"
            )
        if isinstance(exc, openai.NotFoundError):
            return ModelNotFoundError(
                f"{self.opts.base_url} does not serve model '{self.model}' (404)",
                "list the server's models with GET /v1/models",
            )
        if isinstance(exc, openai.APIStatusError):
            text = str(exc.message).lower()
            if exc.status_code in (400, 413, 422) and any(w in text for w in _CONTEXT_WORDS):
                return ContextLengthError(
                    f"{where}: prompt too long for the context window: {exc.message}",
                    "shorten the prompt or lower max tokens",
                )
            if exc.status_code in _TRANSIENT_STATUS or exc.status_code >= 500:
                return UpstreamServerError(f"{where} answered {exc.status_code}: {exc.message}")
            return BackendError(f"{where} answered {exc.status_code}: {exc.message}")
        return BackendError(f"{where}: {type(exc).__name__}: {exc}")

    def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Stream a chat completion; the last chunk carries the server's usage.

        A request with ``stream=False`` is asked for in one piece (one text chunk).
        """
        return self._generate(request, self.opts.unstreamed_retry)

    def generate_once(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """One streamed request; an empty stream is an error, not asked again unstreamed."""
        return self._generate(request, unstreamed_retry=False)

    async def _generate(
        self, request: GenerationRequest, unstreamed_retry: bool
    ) -> AsyncIterator[Chunk]:
        params = request.params
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in request.messages],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "stream": True,
        }
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if self.opts.include_usage:
            kwargs["stream_options"] = {"include_usage": True}
        kwargs.update(_structured_kwargs(request))
        extra = dict(self.opts.extra_body)
        if request.chat_template_kwargs:
            extra["chat_template_kwargs"] = request.chat_template_kwargs
        if params.ignore_eos:
            extra["ignore_eos"] = True
        if extra:
            kwargs["extra_body"] = extra
        if not request.stream:
            async for chunk in self._generate_unstreamed(kwargs):
                yield chunk
            return
        usage: Usage | None = None
        finish: str | None = None
        n_chunks = 0
        try:
            create = self._get_client().chat.completions.with_streaming_response.create
            async with create(**kwargs) as response:
                async for event in _sse_documents(response.iter_lines()):
                    now = time.perf_counter()
                    usage = _reported_usage(event.get("usage")) or usage
                    for choice in event.get("choices") or ():
                        finish = choice.get("finish_reason") or finish
                        piece = _delta_chunk(choice.get("delta") or {}, now)
                        if piece is not None:
                            n_chunks += 1
                            yield piece
        except openai.OpenAIError as exc:
            raise self._translate(exc) from exc
        except _BROKEN_STREAM as exc:  # the connection broke while the stream was read
            raise UpstreamServerError(
                f"{self.model} at {self.opts.base_url}: the stream broke: {type(exc).__name__}"
            ) from exc
        if finish is None and n_chunks == 0 and not unstreamed_retry:
            raise BackendError(
                f"{self.model} at {self.opts.base_url} closed the stream without an answer",
                "check the server's log (a prompt longer than its context does this)",
            )
        if finish is None and n_chunks == 0:
            # Some servers (llama-cpp-python's) report errors raised after the
            # stream opened by closing it empty; ask once more without
            # streaming to learn the real error.
            async for chunk in self._generate_unstreamed(kwargs, after_stream=True):
                yield chunk
            return
        if usage is None:
            usage = Usage(completion_tokens=n_chunks, source="chunks")
        yield Chunk(time_s=time.perf_counter(), final=True, usage=usage, finish_reason=finish)

    async def _generate_unstreamed(
        self, kwargs: dict[str, Any], *, after_stream: bool = False
    ) -> AsyncIterator[Chunk]:
        """The answer in one piece (its JSON read here, as the SSE documents are)."""
        kwargs = {k: v for k, v in kwargs.items() if k not in ("stream", "stream_options")}
        client = self._get_client()
        if after_stream:
            # one retry: the streamed attempt may have left a dead keep-alive
            # connection in the client's pool
            client = client.with_options(max_retries=1)
        try:
            raw = await client.chat.completions.with_raw_response.create(**kwargs)
            doc = json.loads(raw.http_response.content)
        except openai.OpenAIError as exc:
            raise self._translate(exc) from exc
        except _UNREADABLE as exc:
            raise UpstreamServerError(
                f"{self.model} at {self.opts.base_url}: unreadable answer: {type(exc).__name__}"
            ) from exc
        now = time.perf_counter()
        choices = doc.get("choices") or [] if isinstance(doc, dict) else []
        choice = choices[0] if choices else {}
        finish = choice.get("finish_reason")
        if finish is None:
            raise BackendError(
                f"{self.model} at {self.opts.base_url} returned an empty response",
                "check the server's log",
            )
        message = choice.get("message") or {}
        usage = _reported_usage(doc.get("usage")) or Usage(completion_tokens=0, source="none")
        calls = [{**c, "index": i} for i, c in enumerate(message.get("tool_calls") or ())]
        whole = _delta_chunk({**message, "tool_calls": calls}, now)
        if whole is not None:
            yield whole.model_copy(update={"tokens": usage.completion_tokens})
        yield Chunk(time_s=now, final=True, usage=usage, finish_reason=finish)

    async def aclose(self) -> None:
        """Close the HTTP client; one made on another (finished) event loop is dropped."""
        client, loop = self._client, self._client_loop
        self._client = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.close()


def _structured_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """Tools, tool choice, response format and reasoning effort, as the server takes them."""
    kwargs: dict[str, Any] = {}
    if request.tools:
        kwargs["tools"] = [t.model_dump(exclude_none=True) for t in request.tools]
    choice = request.tool_choice
    if choice is not None:
        kwargs["tool_choice"] = choice if isinstance(choice, str) else choice.model_dump()
    if request.parallel_tool_calls is not None:
        kwargs["parallel_tool_calls"] = request.parallel_tool_calls
    if request.response_format is not None:
        kwargs["response_format"] = request.response_format.model_dump(
            by_alias=True, exclude_none=True
        )
    if request.reasoning_effort is not None:
        kwargs["reasoning_effort"] = request.reasoning_effort
    return kwargs


def _delta_chunk(delta: dict[str, Any], now: float) -> Chunk | None:
    """One streamed ``delta`` (or a whole ``message``) as a chunk; None when it is empty.

    Tool-call deltas keep the server's ids, names and argument pieces unchanged;
    reasoning is ``reasoning_content`` (vLLM, llama.cpp) or ``reasoning``.
    """
    text = delta.get("content") or ""
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    calls = []
    for i, call in enumerate(delta.get("tool_calls") or ()):
        function = call.get("function") or {}
        calls.append(
            ToolCallDelta.model_validate(
                {
                    "index": call.get("index", i),
                    "id": call.get("id"),
                    "type": call.get("type"),
                    "function": {k: function.get(k) for k in ("name", "arguments")},
                }
            )
        )
    if not (text or reasoning or calls):
        return None
    return Chunk(text=text, reasoning=reasoning, tool_calls=calls or None, time_s=now, tokens=1)


def _reported_usage(got: dict[str, Any] | None) -> Usage | None:
    """A response's or stream event's ``usage`` object; None when the server sent none."""
    if not got:
        return None
    return Usage(
        prompt_tokens=got.get("prompt_tokens"),
        completion_tokens=got.get("completion_tokens") or 0,
        source="backend",
    )


async def _sse_documents(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON documents of a server-sent event stream, up to ``data: [DONE]``.

    Parsed here rather than by the SDK's ``AsyncStream``, which builds a pydantic
    object per chunk: for a proxy that is most of the cost of a short answer
    (``benchmarks/gateway_overhead.py``). An ``error`` document ends the stream
    with :class:`UpstreamServerError`, as the SDK would with ``APIError``.
    """
    data: list[str] = []
    done = False
    async for line in lines:
        if done:
            continue  # read to the end, so the connection goes back to the pool
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
            continue
        if line or not data:
            continue  # comments, event names, ids and keep-alive blank lines
        payload, data = "\n".join(data), []
        if payload.startswith("[DONE]"):
            done = True
            continue
        yield _sse_document(payload)
    if data and not done and not data[0].startswith("[DONE]"):
        yield _sse_document("\n".join(data))  # the last event had no blank line after it


def _sse_document(payload: str) -> dict[str, Any]:
    doc = json.loads(payload)
    if not isinstance(doc, dict):
        raise UpstreamServerError(f"the server streamed something that is not an object: {doc!r}")
    if doc.get("error"):
        error = doc["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamServerError(f"the server ended the stream with an error: {message}")
    return doc
