"""A model's shape: what the memory and speed estimates need to know about it.

:class:`ModelShape` is built from one of:

- a GGUF file (:func:`shape_from_gguf`): tensor sizes are read with the
  ``gguf`` package, so the weights bytes are exact (the sum of every tensor's
  bytes); the architecture comes from the ``{arch}.*`` metadata keys;
- a Hugging Face ``config.json`` (:func:`shape_from_config`): parameter counts
  are computed from the layer shapes (see :func:`count_params`);
- a catalog card (:func:`shape_from_card`);
- a bundled alias (``smollm2-135m-instruct``, ``gemma-3-270m``): its GGUF.

:func:`resolve_shape` picks the right one for a ``MODEL`` argument.

Sliding-window attention: ``attention_windows`` holds, per layer, the window in
tokens or None for a full-attention layer. GGUF files do not record the layer
pattern, so it is taken from llama.cpp's per-architecture defaults (Gemma 2 and
gpt-oss alternate local/global layers; Gemma 3 has 5 local layers per global
one, ``hparams.set_swa_pattern(6)`` in llama.cpp's ``llama-model.cpp``).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from llmpick.errors import ConfigError, ModelFileError, ModelNotFoundError

if TYPE_CHECKING:
    from llmpick.catalog.schema import ModelCard

__all__ = [
    "ModelShape",
    "count_params",
    "resolve_shape",
    "shape_from_card",
    "shape_from_config",
    "shape_from_gguf",
]

ShapeSource = Literal["gguf", "config", "catalog", "bundled"]

_REPACK_TYPES = ("Q4_0", "Q4_K", "IQ4_NL")
# Every N-th layer (N-1, 2N-1, ...) is global, the others local; llama.cpp defaults.
_SWA_PATTERN_BY_ARCH = {
    "gemma2": 2,
    "gemma3": 6,
    "gemma3n": 5,
    "gpt-oss": 2,
    "gpt_oss": 2,
    "cohere2": 4,
}


class ModelShape(BaseModel):
    """Architecture numbers and parameter counts of one model.

    ``params_total`` sizes the memory, ``params_active`` (per token, smaller
    for MoE) the speed. ``weights_bytes_exact`` is set when the tensors were
    read from a GGUF file, with ``file_quant`` naming its file type.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    source: ShapeSource
    architecture: str
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    value_head_dim: int | None = None
    hidden_size: int
    intermediate_size: int | None = None
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_windows: tuple[int | None, ...] = ()
    num_experts: int | None = None
    num_experts_per_tok: int | None = None
    params_total: int
    params_active: int
    context_native: int | None = None
    context_max: int | None = None
    native_dtype: str = "bf16"
    weights_bytes_exact: int | None = None
    expert_weights_bytes_exact: int | None = None
    cpu_repack_bytes: int = 0
    input_embedding_bytes_exact: int | None = None
    file_quant: str | None = None
    path: str | None = None
    catalog_id: str | None = None

    @property
    def v_head_dim(self) -> int:
        """Per-head size of V (equal to K's except in a few architectures)."""
        return self.value_head_dim or self.head_dim

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model."""
        return self.num_experts is not None and self.num_experts > 1

    @property
    def embedding_params(self) -> int:
        """Parameters in the token embedding and the (untied) LM head."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def sliding_layers(self) -> int:
        """How many layers use a sliding window."""
        return sum(1 for w in self.windows() if w is not None)

    def windows(self) -> tuple[int | None, ...]:
        """Per-layer attention window (None = full attention)."""
        return self.attention_windows or (None,) * self.num_layers


# ---------------------------------------------------------------- parameters


def count_params(
    *,
    num_layers: int,
    hidden_size: int,
    num_attention_heads: int,
    num_kv_heads: int,
    head_dim: int,
    intermediate_size: int | None,
    vocab_size: int,
    tie_word_embeddings: bool,
    num_experts: int | None = None,
    num_experts_per_tok: int | None = None,
    moe_intermediate_size: int | None = None,
    shared_expert_intermediate_size: int | None = None,
    attention_bias: bool = False,
) -> tuple[int, int]:
    """(total, active) parameters of a decoder-only transformer from its config.

    Per layer: Q and O projections ``2 x hidden x heads x head_dim``; K and V
    ``2 x hidden x kv_heads x head_dim``; a gated MLP ``3 x hidden x
    intermediate`` (per expert for MoE, plus a router ``hidden x experts`` and
    any shared expert); two RMSNorm vectors. Plus the embedding and, when not
    tied, the LM head ``vocab x hidden``. Active parameters count only
    ``num_experts_per_tok`` experts.
    """
    q_dim = num_attention_heads * head_dim
    kv_dim = num_kv_heads * head_dim
    attention = 2 * hidden_size * q_dim + 2 * hidden_size * kv_dim
    if attention_bias:
        attention += q_dim + 2 * kv_dim
    norms = 2 * hidden_size
    if num_experts:
        expert_ffn = moe_intermediate_size or intermediate_size or 0
        per_expert = 3 * hidden_size * expert_ffn
        shared = (
            3 * hidden_size * shared_expert_intermediate_size
            if (shared_expert_intermediate_size)
            else 0
        )
        router = hidden_size * num_experts
        mlp_total = per_expert * num_experts + shared + router
        mlp_active = per_expert * (num_experts_per_tok or 1) + shared + router
    else:
        mlp_total = mlp_active = 3 * hidden_size * (intermediate_size or 0)
    embeddings = vocab_size * hidden_size * (1 if tie_word_embeddings else 2) + hidden_size
    total = num_layers * (attention + norms + mlp_total) + embeddings
    active = num_layers * (attention + norms + mlp_active) + embeddings
    return total, active


# ---------------------------------------------------------------- config.json


def _windows_from_config(cfg: dict[str, Any], num_layers: int) -> tuple[int | None, ...]:
    window = cfg.get("sliding_window")
    model_type = str(cfg.get("model_type", ""))
    if not window or (cfg.get("use_sliding_window") is False and "gemma" not in model_type):
        return ()
    window = int(window)
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == num_layers:
        return tuple(window if t == "sliding_attention" else None for t in layer_types)
    pattern = cfg.get("sliding_window_pattern") or _SWA_PATTERN_BY_ARCH.get(model_type)
    if pattern:
        return tuple(None if (i + 1) % int(pattern) == 0 else window for i in range(num_layers))
    return (window,) * num_layers


def shape_from_config(config: dict[str, Any] | str | Path, name: str | None = None) -> ModelShape:
    """Build a shape from a Hugging Face ``config.json`` (a dict or a path).

    Multimodal configs that nest the language model (``text_config``) use it.
    Raises :class:`~llmpick.errors.ConfigError` when the file is not JSON or
    lacks the fields a KV-cache estimate needs.
    """
    origin = "config.json"
    if not isinstance(config, dict):
        path = Path(config)
        origin = str(path)
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelFileError(f"config file {path} does not exist") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"{path} is not a valid config.json: {str(exc).splitlines()[0]}",
                "pass a Hugging Face config.json, a GGUF file, or a catalog id",
            ) from exc
        if name is None:
            name = path.parent.name or path.name
    if not isinstance(config, dict):
        raise ConfigError(f"{origin} must hold a JSON object", "pass a Hugging Face config.json")
    cfg = dict(config)
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg, **cfg["text_config"]}

    def need(*keys: str) -> int:
        for key in keys:
            value = cfg.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        raise ConfigError(
            f"{origin} lacks a positive integer '{keys[0]}'",
            "a decoder config.json needs num_hidden_layers, num_attention_heads, "
            "hidden_size and vocab_size",
        )

    try:
        layers = need("num_hidden_layers", "n_layer", "num_layers")
        heads = need("num_attention_heads", "n_head")
        hidden = need("hidden_size", "n_embd", "d_model")
        vocab = need("vocab_size")
        kv_heads = cfg.get("num_key_value_heads") or heads
        head_dim = cfg.get("head_dim") or hidden // heads
        num_experts = cfg.get("num_experts") or cfg.get("num_local_experts") or None
        experts_per_tok = cfg.get("num_experts_per_tok") or None
        intermediate = cfg.get("intermediate_size") or None
        total, active = count_params(
            num_layers=layers,
            hidden_size=hidden,
            num_attention_heads=heads,
            num_kv_heads=int(kv_heads),
            head_dim=int(head_dim),
            intermediate_size=intermediate,
            vocab_size=vocab,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            num_experts=num_experts,
            num_experts_per_tok=experts_per_tok,
            moe_intermediate_size=cfg.get("moe_intermediate_size"),
            shared_expert_intermediate_size=cfg.get("shared_expert_intermediate_size"),
            attention_bias=bool(cfg.get("attention_bias", False)),
        )
        native = cfg.get("max_position_embeddings")
        rope = cfg.get("rope_scaling") or {}
        factor = rope.get("factor") if isinstance(rope, dict) else None
        original = rope.get("original_max_position_embeddings") if isinstance(rope, dict) else None
        context_max = native
        if factor and native and rope.get("rope_type", rope.get("type")) == "yarn":
            context_max = int((original or native) * factor)
        dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
        return ModelShape(
            name=name or str(cfg.get("_name_or_path") or cfg.get("model_type") or "config"),
            source="config",
            architecture=str(cfg.get("model_type", "unknown")),
            num_layers=layers,
            num_attention_heads=heads,
            num_kv_heads=int(kv_heads),
            head_dim=int(head_dim),
            hidden_size=hidden,
            intermediate_size=intermediate,
            vocab_size=vocab,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_windows=_windows_from_config(cfg, layers),
            num_experts=num_experts,
            num_experts_per_tok=experts_per_tok,
            params_total=total,
            params_active=active,
            context_native=native,
            context_max=context_max,
            native_dtype={"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(
                dtype, "bf16"
            ),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{origin} has a malformed field: {str(exc).splitlines()[0]}",
            "check the numbers in config.json",
        ) from exc


# ---------------------------------------------------------------- catalog


def shape_from_card(card: ModelCard) -> ModelShape:
    """Build a shape from a catalog card (its architecture, params and context)."""
    arch = card.architecture
    windows = tuple(arch.attention_windows()) if arch.sliding_window else ()
    _, computed_active = count_params(
        num_layers=arch.num_hidden_layers,
        hidden_size=arch.hidden_size,
        num_attention_heads=arch.num_attention_heads,
        num_kv_heads=arch.num_key_value_heads,
        head_dim=arch.head_dim,
        intermediate_size=arch.intermediate_size,
        vocab_size=arch.vocab_size,
        tie_word_embeddings=arch.tie_word_embeddings,
        num_experts=arch.num_experts,
        num_experts_per_tok=arch.num_experts_per_tok,
        moe_intermediate_size=arch.moe_intermediate_size,
        shared_expert_intermediate_size=arch.shared_expert_intermediate_size,
    )
    return ModelShape(
        name=card.id,
        source="catalog",
        architecture=arch.model_type,
        num_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_kv_heads=arch.num_key_value_heads,
        head_dim=arch.head_dim,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        vocab_size=arch.vocab_size,
        tie_word_embeddings=arch.tie_word_embeddings,
        attention_windows=windows,
        num_experts=arch.num_experts,
        num_experts_per_tok=arch.num_experts_per_tok,
        params_total=card.params.total,
        params_active=card.params.active
        or (card.params.total if not arch.is_moe else computed_active),
        context_native=card.context.native,
        context_max=card.context.max,
        catalog_id=card.id,
    )


# ---------------------------------------------------------------- GGUF


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    if len(field.types) == 1 and field.types[0].name == "STRING":
        return bytes(value).decode("utf-8", errors="replace")
    if len(field.types) > 1:  # an array: the caller wants its length or its items
        return [field.parts[i] for i in field.data]
    return value.tolist()[0] if hasattr(value, "tolist") else value


def _scalar(value: Any) -> Any:
    if isinstance(value, list):  # per-layer arrays (e.g. head_count_kv in some archs)
        items = [v.tolist()[0] if hasattr(v, "tolist") else v for v in value]
        return max(items) if items else None
    return value


def shape_from_gguf(path: str | Path, name: str | None = None) -> ModelShape:
    """Read a GGUF file's metadata and tensor table (not its weights).

    ``weights_bytes_exact`` is the sum of the tensors' byte sizes; MoE expert
    tensors (``*_exps``) are summed separately so speed estimates can count
    only the active experts.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"GGUF file {path} does not exist", "check the path")
    try:
        from gguf import GGUFReader
        from gguf.constants import LlamaFileType

        reader = GGUFReader(str(path), "r")
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ModelFileError(
            f"cannot read GGUF file {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            "the file may be truncated or not a GGUF model",
        ) from exc

    arch = _field(reader, "general.architecture")
    if not isinstance(arch, str):
        raise ModelFileError(f"GGUF file {path} has no general.architecture", "not a model file")

    def meta(key: str) -> Any:
        return _scalar(_field(reader, f"{arch}.{key}"))

    layers = meta("block_count")
    heads = meta("attention.head_count")
    hidden = meta("embedding_length")
    if not (layers and heads and hidden):
        raise ModelFileError(
            f"GGUF file {path} lacks {arch}.block_count/attention.head_count/embedding_length",
            "not a decoder-only transformer llama.cpp understands",
        )
    kv_heads = meta("attention.head_count_kv") or heads
    key_length = meta("attention.key_length") or hidden // heads
    value_length = meta("attention.value_length") or key_length
    window = meta("attention.sliding_window")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = meta("vocab_size") or (len(tokens.data) if tokens is not None else 0)
    experts = meta("expert_count") or None
    experts_used = meta("expert_used_count") or None

    weights = 0
    expert_bytes = 0
    expert_elements = 0
    total_elements = 0
    has_output = False
    repack = 0
    embedding_bytes = 0
    for tensor in reader.tensors:
        weights += int(tensor.n_bytes)
        # llama.cpp's CPU backend repacks these matrices into an interleaved copy.
        if (
            tensor.tensor_type.name in _REPACK_TYPES
            and tensor.name != "token_embd.weight"
            and len(tensor.shape) == 2
            and int(tensor.shape[1]) % 8 == 0
        ):
            repack += int(tensor.n_bytes)
        total_elements += int(tensor.n_elements)
        if "_exps" in tensor.name:
            expert_bytes += int(tensor.n_bytes)
            expert_elements += int(tensor.n_elements)
        if tensor.name == "output.weight":
            has_output = True
        if tensor.name == "token_embd.weight":
            embedding_bytes = int(tensor.n_bytes)
    active_elements = total_elements
    if experts and experts_used and expert_elements:
        active_elements = (
            total_elements - expert_elements + expert_elements * experts_used // experts
        )

    windows: tuple[int | None, ...] = ()
    if window:
        pattern = _SWA_PATTERN_BY_ARCH.get(arch)
        if pattern:
            windows = tuple(None if (i + 1) % pattern == 0 else window for i in range(layers))
        else:
            windows = (window,) * layers

    file_type = _field(reader, "general.file_type")
    file_quant = None
    if isinstance(file_type, int):
        try:
            file_quant = (
                LlamaFileType(file_type).name.removeprefix("MOSTLY_").replace("ALL_F32", "F32")
            )
        except ValueError:
            file_quant = f"file_type {file_type}"
    ffn = meta("feed_forward_length") or meta("expert_feed_forward_length")
    context = meta("context_length")
    return ModelShape(
        name=name or str(_field(reader, "general.name") or path.stem),
        source="gguf",
        architecture=arch,
        num_layers=int(layers),
        num_attention_heads=int(heads),
        num_kv_heads=int(kv_heads),
        head_dim=int(key_length),
        value_head_dim=int(value_length),
        hidden_size=int(hidden),
        intermediate_size=int(ffn) if ffn else None,
        vocab_size=int(vocab),
        tie_word_embeddings=not has_output,
        attention_windows=windows,
        num_experts=int(experts) if experts else None,
        num_experts_per_tok=int(experts_used) if experts_used else None,
        params_total=total_elements,
        params_active=active_elements,
        context_native=int(context) if context else None,
        context_max=int(context) if context else None,
        native_dtype="bf16",
        weights_bytes_exact=weights,
        expert_weights_bytes_exact=expert_bytes or None,
        cpu_repack_bytes=repack,
        input_embedding_bytes_exact=embedding_bytes or None,
        file_quant=file_quant,
        path=str(path),
    )


# ---------------------------------------------------------------- resolution


def resolve_shape(model: str, cache_dir: Path | None = None) -> ModelShape:
    """Turn a ``MODEL`` argument into a shape.

    Tried in order: an existing ``.gguf`` file, an existing ``config.json`` (or
    a directory holding one, or a GGUF), a bundled alias, a catalog id. Unknown
    names raise :class:`~llmpick.errors.ModelNotFoundError` with close matches.
    """
    path = Path(model).expanduser()
    if path.exists():
        if path.is_dir():
            if (path / "config.json").is_file():
                return shape_from_config(path / "config.json", name=path.name)
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return shape_from_gguf(ggufs[0])
            raise ModelFileError(
                f"{path} holds neither a config.json nor exactly one .gguf file",
                "pass the file itself",
            )
        if path.suffix.lower() == ".gguf":
            return shape_from_gguf(path)
        if path.suffix.lower() == ".json":
            return shape_from_config(path)
        raise ModelFileError(
            f"{path} is neither a .gguf nor a config.json file",
            "pass a GGUF file, a config.json, a bundled alias or a catalog id",
        )
    if model.lower().endswith((".gguf", ".json")):
        raise ModelFileError(f"file {model} does not exist", "check the path")

    from llmpick.backends.bundled import bundled_model

    bundled = bundled_model(model)
    if bundled is not None:
        from llmpick.config import default_cache_dir

        gguf_path = bundled.locate(cache_dir if cache_dir is not None else default_cache_dir())
        shape = shape_from_gguf(gguf_path, name=bundled.name)
        return shape.model_copy(update={"source": "bundled", "catalog_id": bundled.catalog_id})

    from llmpick.catalog import load_catalog

    catalog = load_catalog()
    card = catalog.find(model)
    if card is not None:
        return shape_from_card(card)
    from llmpick.backends.bundled import BUNDLED_MODELS

    close = catalog.suggestions(model)
    close += difflib.get_close_matches(model.lower(), list(BUNDLED_MODELS), n=2, cutoff=0.6)
    hint = (
        "did you mean: " + ", ".join(dict.fromkeys(close)) + "?"
        if close
        else "pass a catalog id (llmpick compare lists them), a bundled alias "
        f"({', '.join(BUNDLED_MODELS)}), a .gguf file or a config.json"
    )
    raise ModelNotFoundError(f"unknown model {model!r}", hint)
