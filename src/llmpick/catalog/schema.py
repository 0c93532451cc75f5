"""The model card: what the catalog knows about one open-weight model.

Every number in a card carries its source. The pydantic models below make a
``source`` field mandatory next to every group of numbers (parameters,
architecture, context, output length, training tokens, benchmark scores,
prices, license), so a card without one fails validation when the catalog is
loaded.

Architecture fields use the names of the Hugging Face ``config.json`` files
they come from (``num_hidden_layers``, ``num_key_value_heads``…), so a value
can be checked against the cited file by eye. For models whose config nests the
language model (Gemma 3 4B+, Qwen2.5-VL) the fields are those of the text
model. MoE expert counts are normalised to ``num_experts`` (gpt-oss calls it
``num_local_experts``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = [
    "Architecture",
    "Benchmark",
    "BenchmarkProtocol",
    "Context",
    "HubGguf",
    "License",
    "Modality",
    "ModelCard",
    "NativeQuant",
    "Params",
    "Price",
    "SourcedInt",
    "Specialization",
    "Variant",
]

#: A citation: a URL, or the title of a document (a report, a model card).
Source = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8)]
#: A lower-case benchmark or alias name without surrounding spaces.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

Modality = Literal["text", "image", "audio", "video"]
Specialization = Literal[
    "general", "chat", "coder", "math", "vision", "reasoning", "translation", "base"
]
LayerType = Literal["full_attention", "sliding_attention"]

#: points (percent) beyond which a third-party figure and the maker's disagree
CONTRADICTION_POINTS = 0.5


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourcedInt(_Strict):
    """One integer with its source (e.g. max output tokens, training tokens)."""

    value: int = Field(gt=0)
    source: Source
    note: str | None = None


class Params(_Strict):
    """Parameter counts. ``active`` is the per-token count of an MoE, None for dense."""

    total: int = Field(gt=0)
    active: int | None = Field(default=None, gt=0)
    source: Source

    @model_validator(mode="after")
    def _active_below_total(self) -> Params:
        if self.active is not None and self.active >= self.total:
            raise ValueError(f"active params {self.active} must be below total {self.total}")
        return self

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model (fewer active than total parameters)."""
        return self.active is not None

    @property
    def active_or_total(self) -> int:
        """Parameters used per token: ``active`` for an MoE, ``total`` for a dense model."""
        return self.active if self.active is not None else self.total


class Architecture(_Strict):
    """Transformer shape, with Hugging Face ``config.json`` field names.

    Sliding-window attention is described by ``sliding_window`` (the window in
    tokens, None when every layer attends to the full context) plus either an
    explicit ``layer_types`` list or ``sliding_window_pattern`` N, meaning every
    N-th layer (layers N-1, 2N-1, …) is global and the others are local, as in
    Gemma 2 (N=2), Gemma 3 (N=6) and gpt-oss (N=2). With a window but neither,
    every layer is local (Mistral 7B v0.1).
    """

    model_type: str
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int | None = Field(default=None, gt=0)
    vocab_size: int = Field(gt=0)
    tie_word_embeddings: bool
    max_position_embeddings: int = Field(gt=0)
    sliding_window: int | None = Field(default=None, gt=0)
    sliding_window_pattern: int | None = Field(default=None, gt=1)
    layer_types: list[LayerType] | None = None
    num_experts: int | None = Field(default=None, gt=1)
    num_experts_per_tok: int | None = Field(default=None, gt=0)
    moe_intermediate_size: int | None = Field(default=None, gt=0)
    shared_expert_intermediate_size: int | None = Field(default=None, gt=0)
    source: Source
    verified: bool = Field(
        default=False,
        description="True only when these numbers were checked against the cited config.json",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Architecture:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.layer_types is not None and len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(
                f"layer_types has {len(self.layer_types)} entries for "
                f"{self.num_hidden_layers} layers"
            )
        if (self.layer_types or self.sliding_window_pattern) and self.sliding_window is None:
            raise ValueError("layer_types/sliding_window_pattern need sliding_window")
        if (self.num_experts is None) != (self.num_experts_per_tok is None):
            raise ValueError("num_experts and num_experts_per_tok go together")
        if self.num_experts is not None and self.num_experts_per_tok is not None:
            if self.num_experts_per_tok > self.num_experts:
                raise ValueError("num_experts_per_tok exceeds num_experts")
        elif self.intermediate_size is None:
            raise ValueError("a dense model needs intermediate_size")
        return self

    @property
    def is_moe(self) -> bool:
        """True when the feed-forward layers are mixtures of experts."""
        return self.num_experts is not None

    def attention_windows(self) -> list[int | None]:
        """Per layer: the attention window in tokens, or None for full attention.

        This is what a KV-cache estimate needs: a sliding layer caches at most
        ``window`` tokens, a full layer the whole context.
        """
        window = self.sliding_window
        if window is None:
            return [None] * self.num_hidden_layers
        if self.layer_types is not None:
            return [window if t == "sliding_attention" else None for t in self.layer_types]
        if self.sliding_window_pattern is not None:
            n = self.sliding_window_pattern
            return [None if (i + 1) % n == 0 else window for i in range(self.num_hidden_layers)]
        return [window] * self.num_hidden_layers

    def kv_cache_bytes_per_token(self, bytes_per_element: float = 2.0) -> float:
        """K and V bytes for one token across all layers, ignoring windows."""
        return (
            2
            * self.num_hidden_layers
            * self.num_key_value_heads
            * self.head_dim
            * bytes_per_element
        )


class Context(_Strict):
    """Context window in tokens, input and output together (the total window).

    ``native`` is the window as trained/configured, ``max`` the window reachable
    with ``extension`` (e.g. YaRN). ``max_input_tokens`` is set only where the
    maker caps the prompt below the window (Command A Translate: a 16K window of
    which at most 8K is input); None means the prompt may fill the window.
    """

    native: int = Field(gt=0)
    max: int = Field(gt=0)
    extension: str | None = None
    max_input_tokens: int | None = Field(default=None, gt=0)
    source: Source

    @model_validator(mode="after")
    def _max_at_least_native(self) -> Context:
        if self.max < self.native:
            raise ValueError(f"context max {self.max} is below native {self.native}")
        if self.max > self.native and not self.extension:
            raise ValueError("context max above native needs the extension method")
        if self.max_input_tokens is not None and self.max_input_tokens > self.max:
            raise ValueError(f"max_input_tokens {self.max_input_tokens} exceeds the window")
        return self


class License(_Strict):
    """License terms that matter when choosing a model."""

    name: str
    commercial_use: bool
    permissive: bool = Field(description="Apache-2.0/MIT-like: no use or user-count limits")
    restrictions: list[str] = Field(default_factory=list)
    url: Source

    @model_validator(mode="after")
    def _permissive_is_unrestricted(self) -> License:
        if self.permissive and (self.restrictions or not self.commercial_use):
            raise ValueError("a permissive license has no restrictions and allows commercial use")
        return self


class BenchmarkProtocol(_Strict):
    """How a score was obtained: shots, chain of thought, and free-text variant."""

    shots: int | None = Field(default=None, ge=0)
    cot: bool | None = None
    variant: str | None = None

    def describe(self) -> str:
        """Return a short human label, e.g. ``5-shot, CoT, instruct``."""
        parts = []
        if self.shots is not None:
            parts.append(f"{self.shots}-shot")
        if self.cot:
            parts.append("CoT")
        if self.variant:
            parts.append(self.variant)
        return ", ".join(parts) or "protocol not stated"


class Benchmark(_Strict):
    """One score (percent, 0-100) from one source."""

    name: Name
    value: float = Field(ge=0, le=100)
    protocol: BenchmarkProtocol = Field(default_factory=BenchmarkProtocol)
    source: Source
    date: dt.date | None = None
    origin: Literal["maker", "third-party"] = "maker"
    verified: bool = Field(
        default=False,
        description="True only when the value and protocol were checked at the cited source",
    )

    @model_validator(mode="after")
    def _lower_case_name(self) -> Benchmark:
        if self.name != self.name.lower():
            raise ValueError(f"benchmark name {self.name!r} must be lower case")
        return self


class Price(_Strict):
    """An API price, US dollars per million tokens, as of ``date``."""

    provider: str
    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)
    source: Source
    date: dt.date


class Variant(_Strict):
    """A related repository: base/instruct sibling, quantized or GGUF build."""

    id: str
    kind: Literal["base", "instruct", "gguf", "awq", "gptq", "fp8", "mlx", "other"]


class HubGguf(_Strict):
    """A common GGUF build for llama.cpp users."""

    repo: str
    filename: str
    quant: str
    source: Source


class NativeQuant(_Strict):
    """The format the maker releases the weights in, when it is not 16-bit (gpt-oss: MXFP4).

    The maker's benchmarks were measured on these weights, so the format loses nothing
    against them; 16-bit copies are upcasts.
    """

    name: str
    source: Source


class ModelCard(_Strict):
    """Everything the catalog knows about one model, each number with its source."""

    id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="Hugging Face repo id")
    aliases: list[str] = Field(default_factory=list)
    old_ids: list[str] = Field(default_factory=list)
    family: str
    version: str
    release_date: dt.date | None = None
    params: Params
    architecture: Architecture
    context: Context
    max_output_tokens: SourcedInt | None = None
    license: License
    training_tokens: SourcedInt | None = None
    languages: list[str] = Field(default_factory=list)
    modalities: list[Modality] = Field(default_factory=lambda: list[Modality](["text"]))
    specialization: list[Specialization] = Field(default_factory=list)
    variants: list[Variant] = Field(default_factory=list)
    benchmarks: list[Benchmark] = Field(default_factory=list)
    prices: list[Price] = Field(default_factory=list)
    hub_gguf: HubGguf | None = None
    native_quant: NativeQuant | None = None

    @model_validator(mode="after")
    def _checks(self) -> ModelCard:
        for code in self.languages:
            if len(code) != 2 or not code.isalpha() or not code.islower():
                raise ValueError(f"language {code!r} is not an ISO 639-1 code")
        if self.params.is_moe != self.architecture.is_moe:
            raise ValueError("params.active and architecture.num_experts disagree on MoE")
        if not self.specialization:
            raise ValueError("specialization must name at least one of the allowed values")
        return self

    @property
    def names(self) -> list[str]:
        """The id, aliases and old ids: every name this card answers to."""
        return [self.id, *self.aliases, *self.old_ids]

    def scores(self, benchmark: str) -> list[Benchmark]:
        """All scores for ``benchmark`` (case-insensitive), in catalog order."""
        wanted = benchmark.lower()
        return [b for b in self.benchmarks if b.name == wanted]

    def contradicting(self, score: Benchmark) -> list[Benchmark]:
        """The maker's figures that contradict a third-party ``score`` (empty if none).

        The maker's figures under the same protocol are compared when there are
        any, otherwise all of the maker's figures for the benchmark; they
        contradict when they differ by more than ``CONTRADICTION_POINTS``.
        """
        if score.origin == "maker":
            return []
        makers = [b for b in self.scores(score.name) if b.origin == "maker"]
        same = [b for b in makers if b.protocol.describe() == score.protocol.describe()] or makers
        return [b for b in same if abs(b.value - score.value) > CONTRADICTION_POINTS]
