"""The Backend seam: one async streaming method plus an identity.

A backend turns a :class:`GenerationRequest` into a stream of :class:`Chunk`
objects, each stamped with ``time.perf_counter()`` when it arrived and the
number of output tokens it carries. The last chunk has ``final=True`` and
carries the usage the backend itself reported. :func:`collect` drains the
stream into a :class:`Generation` with the output text and timings.

Capabilities are class attributes; options are a nested pydantic model with
``extra="forbid"`` so a misspelt option is an error, not a no-op.
"""

from __future__ import annotations

import hashlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from llmpick.backends.tools import (
    ResponseFormat,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolDef,
    merge_tool_call_deltas,
)
from llmpick.errors import BackendError, UnsupportedRequestError

__all__ = [
    "Backend",
    "BackendOptions",
    "Chunk",
    "Generation",
    "GenerationRequest",
    "Message",
    "ModelIdentity",
    "RetryPolicy",
    "SamplingParams",
    "Usage",
    "collect",
    "collect_stream",
    "sha256_text",
]


class Message(BaseModel):
    """One chat message: an assistant's may carry ``tool_calls``, a ``tool`` one a result.

    Dumps leave out the tool fields when they are unset, so a plain message dumps
    (and keys caches) as it always did.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] | None = None
    #: the call a ``tool`` message answers
    tool_call_id: str | None = None
    name: str | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for field in ("tool_calls", "tool_call_id", "name"):
            if data.get(field) is None:
                data.pop(field, None)
        return data


class SamplingParams(BaseModel):
    """Sampling settings; identical for every model in a comparison."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    #: keep generating past end-of-sequence (benchmarks that need N tokens)
    ignore_eos: bool = False


class GenerationRequest(BaseModel):
    """What to generate: messages and sampling settings.

    ``row`` carries the dataset row the request came from; only backends that
    read outputs from data (``column``) look at it.
    """

    model_config = ConfigDict(extra="forbid")

    messages: list[Message]
    params: SamplingParams = SamplingParams()
    row: dict[str, Any] | None = None
    #: False when the caller wants only the whole answer (a gateway client that did
    #: not ask to stream): a remote backend may then ask its server for the answer
    #: in one piece, sparing the server's per-chunk work. Local backends ignore it.
    stream: bool = True
    #: functions the model may call (OpenAI's ``tools``), and whether/which it must call
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    #: ``json_object`` / ``json_schema``: the answer is JSON (matching the schema)
    response_format: ResponseFormat | None = None
    #: extra variables for the chat template (Qwen3's ``enable_thinking``)
    chat_template_kwargs: dict[str, Any] | None = None
    #: gpt-oss style ``low`` / ``medium`` / ``high`` (passed to templates and upstreams)
    reasoning_effort: Literal["low", "medium", "high"] | None = None

    def wants_tools(self) -> bool:
        """Tools were given and ``tool_choice`` is not ``none``."""
        return bool(self.tools) and self.tool_choice != "none"

    def wants_json(self) -> bool:
        """``response_format`` asks for JSON."""
        return self.response_format is not None and self.response_format.type != "text"

    @classmethod
    def from_prompt(
        cls, prompt: str, system: str | None = None, **params: Any
    ) -> GenerationRequest:
        """Build a single-turn request from a prompt and an optional system message."""
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role="user", content=prompt))
        return cls(messages=messages, params=SamplingParams(**params))


class Usage(BaseModel):
    """Token counts for one generation and where they came from."""

    prompt_tokens: int | None = None
    completion_tokens: int = 0
    # "backend": the engine's own count; "chunks": counted from streamed chunks
    source: Literal["backend", "chunks", "none"] = "backend"


class Chunk(BaseModel):
    """A piece of streamed output.

    ``time_s`` is ``time.perf_counter()`` at arrival; ``tokens`` is how many
    output tokens the piece holds (a chunk may hold several, or none).
    """

    text: str = ""
    time_s: float
    tokens: int = 0
    final: bool = False
    usage: Usage | None = None
    finish_reason: str | None = None
    #: a piece of the model's reasoning (``<think>`` text), apart from the answer
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] | None = None


class ModelIdentity(BaseModel):
    """Who produced an output: enough to reproduce it and to key a cache."""

    model_config = ConfigDict(frozen=True)

    backend: str
    model: str
    weights_sha256: str | None = None
    revision: str | None = None
    quantization: str | None = None
    chat_template_sha256: str | None = None
    base_url: str | None = None
    #: CPU threads a local runtime decodes with (shown, not part of the cache key: the
    #: weights and the prompt decide an output, the thread count only its speed)
    n_threads: int | None = None
    #: SHA-256 of a LoRA adapter applied on top (``llmpick tune``) and its scale
    adapter_sha256: str | None = None
    adapter_scale: float | None = None

    def key(self) -> str:
        """A stable hash identifying these weights behind this backend (and URL).

        Unset adapter fields are left out, so identities without an adapter keep
        the keys (and cache entries) they had before adapters existed.
        """
        unset = {f for f in ("adapter_sha256", "adapter_scale") if getattr(self, f) is None}
        return sha256_text(self.model_dump_json(exclude={"n_threads", *unset}))


class Generation(BaseModel):
    """A finished generation: output, usage and timing."""

    output: str
    usage: Usage
    start_s: float
    first_token_s: float | None
    end_s: float
    finish_reason: str | None = None
    chunk_times_s: list[float] = Field(default_factory=list)
    chunk_tokens: list[int] = Field(default_factory=list)
    reasoning: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)

    def raw_output(self) -> str:
        """The answer as one text: reasoning in ``<think>``, calls in ``<tool_call>`` tags.

        What the store keeps; :func:`llmpick.backends.tool_format.split_output`
        reads it back. Equals ``output`` when there is neither.
        """
        from llmpick.backends.tool_format import join_output

        return join_output(self.output, self.reasoning, self.tool_calls)

    @property
    def time_to_first_token_s(self) -> float | None:
        """Seconds from sending the request to the first output token."""
        if self.first_token_s is None:
            return None
        return self.first_token_s - self.start_s

    @property
    def total_s(self) -> float:
        """Seconds from sending the request to the last chunk."""
        return self.end_s - self.start_s

    @property
    def output_tokens_per_second(self) -> float | None:
        """Decode rate: tokens after the first over the time after the first."""
        n = self.usage.completion_tokens
        if self.first_token_s is None or n < 2:
            return None
        decode_s = self.end_s - self.first_token_s
        return (n - 1) / decode_s if decode_s > 0 else None


class RetryPolicy(BaseModel):
    """Which failures of a backend are worth another attempt, how often, and how long to wait.

    A backend declares its policy (:meth:`Backend.retry_policy`); the model pool
    applies it, and only before the first chunk of an answer was passed on. The
    wait before retry ``n`` (from 0) is the server's ``Retry-After`` when it sent
    one (up to ``max_retry_after_s``), else exponential backoff with jitter:
    ``initial_backoff_s * 2**n`` capped at ``max_backoff_s``, times a factor in
    [1 - jitter, 1] (the openai SDK's schedule, which this replaces).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    retry_on: tuple[type[BackendError], ...] = ()
    max_retries: int = Field(0, ge=0)
    initial_backoff_s: float = Field(0.5, ge=0.0)
    max_backoff_s: float = Field(8.0, ge=0.0)
    jitter: float = Field(0.25, ge=0.0, le=1.0)
    max_retry_after_s: float = Field(60.0, ge=0.0)

    def should_retry(self, error: BaseException, retries_done: int) -> bool:
        """Whether ``error`` after ``retries_done`` retries deserves another attempt."""
        return retries_done < self.max_retries and isinstance(error, self.retry_on)

    def delay_s(self, error: BaseException, retries_done: int) -> float:
        """Seconds to wait before the next attempt."""
        asked = getattr(error, "retry_after_s", None)
        if asked is not None and 0 <= asked <= self.max_retry_after_s:
            return float(asked)
        backoff = min(self.max_backoff_s, self.initial_backoff_s * 2.0**retries_done)
        return backoff * (1.0 - self.jitter * random.random())


class BackendOptions(BaseModel):
    """Base for backend options: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class Backend(ABC):
    """A way to run a model.

    Subclasses set the class attributes and implement :meth:`generate` and
    :meth:`describe`.
    """

    name: ClassVar[str]
    #: runs in this process and serves one request at a time
    is_local: ClassVar[bool] = True
    #: ``seed`` makes sampling reproducible
    supports_seed: ClassVar[bool] = True
    #: the backend needs the dataset row (reads outputs from it)
    needs_row: ClassVar[bool] = False
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    #: honours ``tools`` / ``response_format`` (see :meth:`check_request`)
    supports_tools: ClassVar[bool] = False
    supports_response_format: ClassVar[bool] = False
    #: options a long-running server (``serve``, and ``bench``, which measures what serve
    #: does) opens this backend with where the spec sets none; see PoolOptions.serving_defaults
    serving_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, model: str, options: BackendOptions | None = None) -> None:
        self.model = model
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Stream the answer to ``request``; the last chunk has ``final=True``."""

    def generate_once(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Like :meth:`generate`, but never send a second request on the backend's own.

        Measurements (bench) use it: a fallback request would hide a failure
        inside a longer latency. Backends without such fallbacks need not override it.
        """
        return self.generate(request)

    def check_request(self, request: GenerationRequest) -> None:
        """Raise :class:`UnsupportedRequestError` for what this backend cannot honour.

        Called before generating, so tools or a schema are never silently dropped.
        """
        if request.wants_tools() and not self.supports_tools:
            raise UnsupportedRequestError(
                f"the {self.name} backend of {self.model} cannot call tools",
                "send the request to a model that can (llamacpp, or an openai upstream "
                "that supports tools)",
                param="tools",
            )
        if request.wants_json() and not self.supports_response_format:
            raise UnsupportedRequestError(
                f"the {self.name} backend of {self.model} cannot enforce response_format",
                "send the request to a model that can (llamacpp, or an openai upstream "
                "with structured output)",
                param="response_format",
            )

    @abstractmethod
    def describe(self) -> ModelIdentity:
        """Identity of the model behind this backend."""

    def retry_policy(self) -> RetryPolicy:
        """Which failures the model pool may retry, how often and how long apart.

        The default retries nothing: an in-process model that failed will fail again.
        """
        return RetryPolicy()

    async def probe(self) -> None:  # noqa: B027 - optional hook
        """Check, actively, that the model can answer; raise a BackendError if not.

        The default suits in-process models: loaded means ready.
        """

    def count_tokens(self, text: str) -> int | None:
        """Tokens in ``text`` by this model's tokenizer, or None if unknown."""
        return None

    def runtime_summary(self) -> str | None:
        """What the backend chose when it loaded (slots, threads, cache), for a server's log."""
        return None

    def context_length(self) -> int | None:
        """The context window this backend runs with, or None if unknown."""
        return None

    def max_concurrency(self) -> int | None:
        """How many requests this backend can serve at once; None means no own limit.

        A single-sequence local backend answers 1; a batching backend its number of
        slots; a remote one None (the model pool then applies its configured limit).
        """
        return 1 if self.is_local else None

    def replica_states(self) -> list[BaseModel]:
        """Each server's state when this backend stands for several (``/ready`` shows them)."""
        return []

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, clients, model memory)."""


async def collect(backend: Backend, request: GenerationRequest) -> Generation:
    """Run ``request`` on ``backend`` and gather the stream into a Generation."""
    return await collect_stream(backend.generate(request))


async def collect_stream(stream: AsyncIterator[Chunk]) -> Generation:
    """Gather a stream of chunks into a Generation; timing starts at this call."""
    start = time.perf_counter()
    parts: list[str] = []
    first: float | None = None
    times: list[float] = []
    counts: list[int] = []
    usage: Usage | None = None
    finish: str | None = None
    end = start
    reasoning: list[str] = []
    deltas: list[ToolCallDelta] = []
    async for chunk in stream:
        end = chunk.time_s
        reasoning.append(chunk.reasoning)
        deltas.extend(chunk.tool_calls or ())
        if chunk.tokens or chunk.text or chunk.reasoning or chunk.tool_calls:
            parts.append(chunk.text)
            times.append(chunk.time_s)
            counts.append(chunk.tokens)
            if first is None:
                first = chunk.time_s
        if chunk.final:
            usage = chunk.usage
            finish = chunk.finish_reason
    if usage is None:
        usage = Usage(completion_tokens=sum(counts), source="chunks")
    return Generation(
        output="".join(parts),
        usage=usage,
        start_s=start,
        first_token_s=first,
        end_s=max(end, first or start),
        finish_reason=finish,
        chunk_times_s=times,
        chunk_tokens=counts,
        reasoning="".join(reasoning),
        tool_calls=merge_tool_call_deltas(deltas),
    )


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a UTF-8 string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
