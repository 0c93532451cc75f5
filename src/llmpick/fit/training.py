"""Training memory and time per step for LoRA and QLoRA (estimates, with their basis).

Memory, in bytes:

- base weights at their training precision: fp32 on CPU, bf16 on a GPU, NF4
  for QLoRA at 4.127 bits per parameter (4-bit NF4 plus double-quantized
  constants; Dettmers et al. 2023, arXiv:2305.14314, section 3);
- adapter: ``rank * (in + out)`` parameters per adapted linear layer, kept in
  fp32 with its gradient and AdamW's two moments: 16 bytes per parameter;
- activations kept for the backward pass, per token and layer (elements, at
  the compute precision): the attention block's norm output, q, k, v, the
  attention output and the softmax probabilities (heads x sequence), the MLP's
  norm output, gate, up, activation and product (``h + 4 i``), two residuals,
  and with LoRA dropout one masked copy of each adapted layer's input. With
  gradient checkpointing only each layer's input is kept, plus one layer's
  activations while it is recomputed;
- logits of every position in fp32, twice (values and their gradient).

The process around it (the Python runtime, torch's allocator, the tokenizer,
the data) is not modelled: a measured peak of the whole process is higher.

Time per step: ``4 N`` FLOPs per token with the base frozen (forward ``2 N``,
backward through the activations ``2 N``; no weight gradients for the frozen
weights, which make the third ``2 N`` of the usual ``6 N``; Kaplan et al.
2020, arXiv:2001.08361), ``6 N`` with checkpointing (one more forward), at
the device's peak dense FLOP/s times an assumed utilization.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from llmpick.fit.shape import ModelShape

__all__ = ["ASSUMED_UTILIZATION", "TrainingEstimate", "estimate_for_loaded", "estimate_training"]

#: share of peak FLOP/s a training step reaches (an assumption, not a measurement)
ASSUMED_UTILIZATION = 0.3
_NF4_BITS = 4.127


class TrainingEstimate(BaseModel):
    """Estimated memory and time of one LoRA/QLoRA training step."""

    method: Literal["lora", "qlora"]
    seq_len: int
    batch: int
    rank: int
    weight_bytes_per_param: float
    weights_bytes: int
    adapter_params: int
    adapter_state_bytes: int
    activation_bytes: int
    activation_bytes_checkpointed: int
    logits_bytes: int
    gradient_checkpointing: bool
    total_bytes: int
    total_bytes_other_choice: int
    step_seconds: float | None = None
    tokens_per_second: float | None = None
    basis: str


def _adapter_params(shape: ModelShape, rank: int) -> int:
    h, hd = shape.hidden_size, shape.head_dim
    q_out, kv_out = shape.num_attention_heads * hd, shape.num_kv_heads * hd
    i = shape.intermediate_size or 4 * h
    per_layer = (h + q_out) + 2 * (h + kv_out) + (q_out + h) + 2 * (h + i) + (i + h)
    return rank * per_layer * shape.num_layers


def _activation_elements_per_token_layer(shape: ModelShape, seq_len: int, dropout: bool) -> int:
    h, hd = shape.hidden_size, shape.head_dim
    i = shape.intermediate_size or 4 * h
    attention = h + shape.num_attention_heads * hd + 2 * shape.num_kv_heads * hd + h
    attention += shape.num_attention_heads * seq_len  # softmax probabilities
    mlp = h + 4 * i
    masks = (6 * h + i) if dropout else 0
    return attention + mlp + 2 * h + masks


def estimate_training(
    shape: ModelShape,
    method: Literal["lora", "qlora"] = "lora",
    seq_len: int = 512,
    batch: int = 4,
    rank: int = 16,
    gpu: bool = False,
    gradient_checkpointing: bool = False,
    dropout: bool = True,
    peak_flops: float | None = None,
) -> TrainingEstimate:
    """Memory of one training step of ``shape`` (and its time, given the device's FLOP/s)."""
    compute_bytes = 2 if gpu else 4
    per_param = _NF4_BITS / 8 if method == "qlora" else compute_bytes
    weights = int(shape.params_total * per_param)
    adapter = _adapter_params(shape, rank)
    tokens = seq_len * batch
    per_layer = _activation_elements_per_token_layer(shape, seq_len, dropout)
    full = tokens * per_layer * shape.num_layers * compute_bytes
    checkpointed = tokens * (shape.hidden_size * shape.num_layers + per_layer) * compute_bytes
    logits = 2 * tokens * shape.vocab_size * 4
    base_total = weights + adapter * 16 + logits
    chosen, other = (checkpointed, full) if gradient_checkpointing else (full, checkpointed)
    step_s = None
    if peak_flops:
        flops = (6 if gradient_checkpointing else 4) * shape.params_total * tokens
        step_s = flops / (peak_flops * ASSUMED_UTILIZATION)
    precision = "NF4 (4.127 bits)" if method == "qlora" else ("bf16" if gpu else "fp32")
    basis = (
        f"estimated: base weights in {precision}, {adapter:,} adapter parameters x 16 B "
        "(fp32 weight, gradient, AdamW moments), activations per token and layer "
        f"{'with' if gradient_checkpointing else 'without'} gradient checkpointing, fp32 logits "
        "x 2; the process around it (runtime, allocator, tokenizer) not included"
        + (
            f"; time: {6 if gradient_checkpointing else 4}N FLOPs per token at "
            f"{ASSUMED_UTILIZATION:.0%} of {peak_flops / 1e12:.1f} TFLOP/s (assumed)"
            if peak_flops
            else ""
        )
    )
    return TrainingEstimate(
        method=method, seq_len=seq_len, batch=batch, rank=rank, weight_bytes_per_param=per_param,
        weights_bytes=weights, adapter_params=adapter, adapter_state_bytes=adapter * 16,
        activation_bytes=full, activation_bytes_checkpointed=checkpointed, logits_bytes=logits,
        gradient_checkpointing=gradient_checkpointing, total_bytes=base_total + chosen,
        total_bytes_other_choice=base_total + other, step_seconds=step_s,
        tokens_per_second=tokens / step_s if step_s else None, basis=basis,
    )  # fmt: skip


def estimate_for_loaded(model: Any, options: Any, longest: int) -> TrainingEstimate:
    """The estimate for a model transformers loaded and ``llmpick tune``'s options.

    The sequence length is the longest training row (the batch pads to it).
    """
    from llmpick.fit.shape import shape_from_config

    shape = shape_from_config(model.config.to_dict(), name=str(model.config.model_type))
    train = options.train
    return estimate_training(
        shape,
        method="qlora" if train.qlora else "lora",
        seq_len=min(longest, train.max_seq_len),
        batch=train.batch_size,
        rank=options.lora.rank,
        gpu=str(model.device).startswith("cuda"),
        gradient_checkpointing=train.gradient_checkpointing,
        dropout=options.lora.dropout > 0,
    )
