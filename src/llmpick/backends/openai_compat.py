"""The ``openai`` backend: any OpenAI-compatible chat completions server.

vLLM, Ollama, TGI, llama.cpp's server and hosted providers all speak this
protocol. Responses are streamed with ``stream_options.include_usage`` so the
server's own token counts are recorded when it reports them; otherwise each
streamed content delta counts as one token (``usage.source == "chunks"``).

HTTP goes through :mod:`llmpick.backends.openai_http` (aiohttp with a keep-alive pool,
orjson), not the openai SDK, whose per-request and per-chunk work was most of a proxy's
cost. There are no retries in the HTTP layer: the backend declares its :class:`RetryPolicy`
(429, 408/409/5xx, unreachable, timed out; ``max_retries`` of them, backoff
honouring ``Retry-After``) and the model pool applies it. The API
key is read from the environment variable named by ``api_key_env``; with
none named, a placeholder key is sent (local servers ignore it) and
``OPENAI_API_KEY`` is deliberately not forwarded to arbitrary URLs.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

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
from llmpick.backends.openai_http import UpstreamFailure, UpstreamHTTP, retry_after_s, sse_documents
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
        self._http = UpstreamHTTP(opts.base_url, key, opts.timeout_s, opts.connect_timeout_s)

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
        try:
            await self._http.get_json("/models", timeout_s=min(self.opts.timeout_s, 10.0))
        except UpstreamFailure as exc:
            raise self._translate(exc) from exc

    def _translate(
        self, exc: UpstreamFailure, mid_stream: bool = False
    ) -> BackendError | ModelNotFoundError:
        error = self._translate_status(exc, mid_stream)
        if isinstance(error, BackendError):
            error.retry_after_s = retry_after_s(exc.headers)
        return error

    def _translate_status(
        self, exc: UpstreamFailure, mid_stream: bool
    ) -> BackendError | ModelNotFoundError:
        where = f"{self.model} at {self.opts.base_url}"
        if exc.kind == "timeout":
            return UpstreamTimeoutError(
                f"request to {where} timed out", "raise timeout_s or check the server's load"
            )
        if exc.kind == "connect":
            return EndpointUnreachableError(
                f"cannot connect to {self.opts.base_url}",
                "start the server or fix base_url (it usually ends in /v1)",
            )
        if exc.kind == "broken" and mid_stream:
            return UpstreamServerError(f"{where}: the stream broke: {exc.cause}")
        if exc.kind == "broken":
            return BackendError(
                f"{where}: the server broke the connection without answering ({exc.cause})",
                "llama-cpp-python's server does this when the prompt exceeds its context "
                "window; check the prompt length and the server's log",
            )
        if exc.kind == "unreadable":
            return UpstreamServerError(f"{where}: unreadable answer: {exc.message}")
        status = exc.status
        if status is None:  # an error document inside a stream
            return UpstreamServerError(f"{where}: {exc.message}")
        if status in (401, 403):
            env = self.opts.api_key_env
            return AuthenticationError(
                f"{self.opts.base_url} refused the API key ({status})",
                f"check the key in ${env}" if env else "set api_key_env for this model",
            )
        if status == 429:
            return RateLimitError(
                f"{where} answered 429 (rate limited)", "lower --concurrency or raise max_retries"
            )
        if status == 404:
            return ModelNotFoundError(
                f"{self.opts.base_url} does not serve model '{self.model}' (404)",
                "list the server's models with GET /v1/models",
            )
        text = exc.message.lower()
        if status in (400, 413, 422) and any(w in text for w in _CONTEXT_WORDS):
            return ContextLengthError(
                f"{where}: prompt too long for the context window: {exc.message}",
                "shorten the prompt or lower max tokens",
            )
        if status in _TRANSIENT_STATUS or status >= 500:
            return UpstreamServerError(f"{where} answered {status}: {exc.message}")
        return BackendError(f"{where} answered {status}: {exc.message}")

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
        kwargs.update(self.opts.extra_body)
        if request.chat_template_kwargs:
            kwargs["chat_template_kwargs"] = request.chat_template_kwargs
        if params.ignore_eos:
            kwargs["ignore_eos"] = True
        if not request.stream:
            async for chunk in self._generate_unstreamed(kwargs):
                yield chunk
            return
        usage: Usage | None = None
        finish: str | None = None
        n_chunks = 0
        opened = False
        try:
            async with self._http.stream_lines("/chat/completions", kwargs) as lines:
                opened = True
                async for event in sse_documents(lines):
                    now = time.perf_counter()
                    usage = _reported_usage(event.get("usage")) or usage
                    for choice in event.get("choices") or ():
                        finish = choice.get("finish_reason") or finish
                        piece = _delta_chunk(choice.get("delta") or {}, now)
                        if piece is not None:
                            n_chunks += 1
                            yield piece
        except UpstreamFailure as exc:
            raise self._translate(exc, mid_stream=opened) from exc
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
        try:
            # one retry after a stream: it may have left a dead keep-alive connection
            doc = await self._http.post_json(
                "/chat/completions", kwargs, retries=1 if after_stream else 0
            )
        except UpstreamFailure as exc:
            raise self._translate(exc) from exc
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
        yield (whole or Chunk(time_s=now)).model_copy(update={"tokens": usage.completion_tokens})
        yield Chunk(time_s=now, final=True, usage=usage, finish_reason=finish)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()


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
