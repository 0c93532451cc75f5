"""Internal consistency of every catalog card, read with plain YAML (not the catalog loader).

Independent of :mod:`llmpick.catalog.loader` and its pydantic schema on purpose: a bug there
cannot hide a bad card here.

Parameter count recomputed from the architecture (``config.json`` names), weights only,
ignoring norms and biases (< 0.1% at these sizes):

- embeddings: ``vocab_size x hidden_size``, twice when ``tie_word_embeddings`` is false
  (a separate output projection);
- attention per layer: ``hidden x heads x head_dim`` (Q) + ``2 x hidden x kv_heads x head_dim``
  (K, V) + ``heads x head_dim x hidden`` (O);
- gated MLP per layer (SwiGLU/GeGLU: gate, up, down): ``3 x hidden x intermediate``;
- MoE layer: ``num_experts x 3 x hidden x moe_intermediate`` (``intermediate_size`` where the
  config has no ``moe_intermediate_size``, as gpt-oss) + a shared expert
  ``3 x hidden x shared_expert_intermediate_size`` + the router ``hidden x num_experts``;
  active parameters count ``num_experts_per_tok`` experts instead of all.

Two makers' conventions are taken as documented: OpenAI's active count for gpt-oss leaves out
the input embedding table (a lookup, not a matmul; the unembedding stays in: 5.13B and 3.61B
in the gpt-oss model card, arXiv:2508.10925), and Qwen (v1) ``config.json`` states
``intermediate_size`` as twice the MLP width (``modeling_qwen.py`` builds each projection
with ``config.intermediate_size // 2``).

The stated total must lie within 2% of that. Vision-language cards state the total with the
vision encoder, which their text-model ``config.json`` does not describe: for them the text
model must be at most the stated total and the encoder (the difference) at most
``VISION_ENCODER_MAX`` of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

DATA = Path(__file__).parents[1] / "src" / "llmpick" / "catalog" / "data"
TOLERANCE = 0.02
#: Largest share of a vision-language model's total taken by its vision encoder (SigLIP 417M
#: on Gemma 3 4B is ~10%; Qwen2.5-VL-3B's 670M ViT ~18%).
VISION_ENCODER_MAX = 0.20
#: model types whose transformers implementation derives head_dim = hidden_size / heads
#: (Gemma 2/3, Qwen3 and gpt-oss set head_dim on its own, so the product may differ).
#: model types whose maker leaves the input embedding out of the active parameter count
ACTIVE_WITHOUT_INPUT_EMBEDDING = {"gpt_oss"}
HEAD_DIM_FROM_HIDDEN = {"llama", "mistral", "qwen2", "qwen2_moe", "qwen2_5_vl", "cohere2"}
#: model types that interleave sliding-window and global layers
SLIDING_FAMILIES = {"gemma2", "gemma3", "gemma3_text", "gpt_oss", "cohere2"}


def _cards() -> list[dict[str, Any]]:
    cards = []
    for path in sorted(DATA.glob("*.yaml")):
        cards += yaml.safe_load(path.read_text(encoding="utf-8"))["models"]
    return cards


CARDS = _cards()


def _params(a: dict[str, Any], active: bool = False) -> int:
    hidden, layers = a["hidden_size"], a["num_hidden_layers"]
    q_width = a["num_attention_heads"] * a["head_dim"]
    kv_width = a["num_key_value_heads"] * a["head_dim"]
    attention = 2 * hidden * q_width + 2 * hidden * kv_width
    if a.get("num_experts"):
        experts = a["num_experts_per_tok"] if active else a["num_experts"]
        expert_width = a.get("moe_intermediate_size") or a["intermediate_size"]
        mlp = experts * 3 * hidden * expert_width + hidden * a["num_experts"]
        mlp += 3 * hidden * (a.get("shared_expert_intermediate_size") or 0)
    else:
        width = a["intermediate_size"] // (2 if a["model_type"] == "qwen" else 1)
        mlp = 3 * hidden * width
    tables = 1 if a["tie_word_embeddings"] else 2
    if active and a["model_type"] in ACTIVE_WITHOUT_INPUT_EMBEDDING:
        tables -= 1
    return a["vocab_size"] * hidden * tables + layers * (attention + mlp)


@pytest.mark.parametrize("card", CARDS, ids=[c["id"] for c in CARDS])
def test_parameter_count_matches_the_architecture(card: dict[str, Any]) -> None:
    stated = card["params"]["total"]
    computed = _params(card["architecture"])
    if "image" in card.get("modalities", []):
        assert computed <= stated * (1 + TOLERANCE), f"text model {computed:,} > total {stated:,}"
        assert stated - computed <= VISION_ENCODER_MAX * stated, f"{computed:,} vs {stated:,}"
        return
    assert abs(computed - stated) <= TOLERANCE * stated, f"computed {computed:,}, stated {stated:,}"
    if card["params"].get("active"):
        active = _params(card["architecture"], active=True)
        stated_active = card["params"]["active"]
        assert abs(active - stated_active) <= TOLERANCE * stated_active, (
            f"active: computed {active:,}, stated {stated_active:,}"
        )


@pytest.mark.parametrize("card", CARDS, ids=[c["id"] for c in CARDS])
def test_head_dim_times_heads_is_hidden_size_where_required(card: dict[str, Any]) -> None:
    a = card["architecture"]
    if a["model_type"] in HEAD_DIM_FROM_HIDDEN:
        assert a["head_dim"] * a["num_attention_heads"] == a["hidden_size"]
    assert a["num_attention_heads"] % a["num_key_value_heads"] == 0


@pytest.mark.parametrize("card", CARDS, ids=[c["id"] for c in CARDS])
def test_context_fits_the_position_embeddings(card: dict[str, Any]) -> None:
    context, positions = card["context"], card["architecture"]["max_position_embeddings"]
    assert context["native"] <= positions, "native context beyond max_position_embeddings"
    if context["max"] > positions:
        assert context.get("extension"), "context max beyond the positions needs its extension"
    limit = context.get("max_input_tokens")
    assert limit is None or limit <= context["max"]


@pytest.mark.parametrize("card", CARDS, ids=[c["id"] for c in CARDS])
def test_sliding_window_fields_where_the_family_uses_them(card: dict[str, Any]) -> None:
    a = card["architecture"]
    if a["model_type"] in SLIDING_FAMILIES:
        assert a.get("sliding_window"), "this family interleaves sliding-window layers"
        assert a.get("sliding_window_pattern") or a.get("layer_types"), "which layers are local?"
    if a["model_type"] == "mistral" and card["id"].endswith("v0.1"):
        assert a.get("sliding_window") == 4096  # Mistral 7B v0.1 config.json
