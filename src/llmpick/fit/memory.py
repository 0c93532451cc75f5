"""Memory estimates: weights, KV cache and each runtime's overhead.

KV cache
    ``2 x layers x kv_heads x head_dim x tokens x batch x bytes(kv dtype)``;
    the 2 is K and V. A sliding-window layer caches ``min(window, tokens)``
    tokens (Gemma 2/3, gpt-oss), so :func:`kv_cache_bytes` sums layer by layer.
    Mixture-of-experts changes nothing here (attention is shared).

    llama.cpp pads the context to a multiple of 256 cells and, by default
    (``swa_full=True`` in llama.cpp's context params, which llama-cpp-python
    keeps), gives sliding-window layers a *full-size* cache. With
    ``swa_full=False`` a sliding layer gets ``min(n_ctx, pad256(window +
    n_seq + n_ubatch))`` cells: the window plus one micro-batch. ``batch``
    sequences (the ``parallel`` slots of the llamacpp backend) share one cache
    of ``batch x pad256(context)`` cells.
    :func:`llamacpp_kv_cache_bytes` reproduces both; ``benchmarks/
    fit_vs_llamacpp.py`` checks it against the size llama.cpp logs.

Weights
    From a GGUF file: the exact sum of its tensors' bytes. Otherwise
    ``params x bits_per_weight / 8`` (see :mod:`llmpick.fit.quant`), with the
    embedding and LM head kept at 16 bits for formats that do not quantize them.

Runtime overhead (each term is returned by name in ``overhead_breakdown``;
:mod:`llmpick.fit.runtimes` picks the formula for each runtime)
    llama.cpp (calibrated on the bundled GGUFs with llama-cpp-python 0.3.x,
    ``n_ubatch = 512``, flash attention off as llama-cpp-python's default):

    - compute buffer: llama.cpp reserves the larger of the *logits* phase,
      ``4 x n_ubatch x (n_vocab + 3 x hidden)``, and the *attention* phase,
      ``4 x n_ubatch x n_ctx x (n_head + 1) + 4 x n_ubatch x (3 x hidden + 2 x ffn)``
      (f32 KQ scores and mask, plus activations). On a GPU the whole
      reservation is allocated. On a CPU only touched pages count and plain
      generation computes logits for the last token only, so the attention
      phase is what a filled context uses, plus ggml's CPU work buffer that
      converts the scores to f16 for the V product (``2 x n_ubatch x n_ctx x
      n_head``).
    - output buffer: ``4 x n_vocab x n_seq`` (last-token logits, host memory).
    - CPU repack: on x86/ARM CPUs llama.cpp copies Q4_0/Q4_K/IQ4_NL matrices
      into an interleaved layout (``CPU_REPACK`` buffer, same size) while the
      mapped originals stay resident.
    - host process (CPU runs): 46 MiB for Python + llama-cpp-python measured
      after ``import llama_cpp`` (Linux x86-64), plus 240 bytes per vocabulary
      entry (llama.cpp's tokenizer tables; fitted on the 49k and 262k
      vocabularies of the bundled models).
    - CUDA context (GPU runs): 300 MiB, a typical figure for CUDA 12 with lazy
      module loading (assumption).

    vLLM: pre-allocates ``gpu_memory_utilization`` (0.9) of the GPU; the KV
    cache gets what is left after weights, the profiled activation peak and
    CUDA graphs, so ``fits`` compares against 0.9 x memory and
    ``max_concurrent_sequences`` is how many full-context sequences that pool
    holds. Overhead: activation peak for ``max_num_batched_tokens`` (8192)
    ``x (4 x hidden + 2 x intermediate) x 2 bytes`` plus sampler logits ``256
    x vocab x 4``; CUDA graphs 0.5 GiB; CUDA context and NCCL 0.5 GiB (outside
    the 0.9). These are assumptions from vLLM's docs and typical start-up logs.

    transformers: the weights, a KV cache in the model dtype, and activations
    for a prefill of ``batch x tokens``: ``batch x tokens x (4 x hidden + 3 x
    intermediate) x 2 bytes`` (hidden states, gate/up MLP intermediates;
    ``generate`` keeps only the last position's logits) plus last-token logits
    in f32. Add 10% of weights for the PyTorch caching allocator and 500 MiB
    for the CUDA context (or 400 MiB for Python + torch on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmpick.errors import ConfigError
from llmpick.fit.quant import Quantization, kv_bytes_per_element

if TYPE_CHECKING:
    from llmpick.fit.shape import ModelShape
    from llmpick.hardware.devices import Device

__all__ = [
    "LlamaCppSettings",
    "Overhead",
    "kv_cache_bytes",
    "kv_cache_tokens",
    "llamacpp_kv_cache_bytes",
    "llamacpp_n_ctx",
    "llamacpp_overhead",
    "transformers_overhead",
    "vllm_overhead",
    "weights_bytes",
]

MIB = 1024**2
GIB = 1024**3

LLAMACPP_HOST_BASE_BYTES = 46 * MIB
LLAMACPP_BYTES_PER_VOCAB_ENTRY = 240
LLAMACPP_CTX_PAD = 256
CUDA_CONTEXT_BYTES = 300 * MIB
VLLM_GPU_MEMORY_UTILIZATION = 0.9
VLLM_MAX_NUM_BATCHED_TOKENS = 8192
VLLM_MAX_NUM_SEQS = 256
VLLM_CUDA_GRAPHS_BYTES = GIB // 2
VLLM_CUDA_CONTEXT_BYTES = GIB // 2
TRANSFORMERS_CUDA_CONTEXT_BYTES = 500 * MIB
TRANSFORMERS_CPU_BASE_BYTES = 400 * MIB
REPACK_TYPES = ("Q4_0", "Q4_K", "IQ4_NL")


@dataclass(frozen=True)
class LlamaCppSettings:
    """The llama.cpp context settings the estimate assumes (llama-cpp-python defaults)."""

    n_batch: int = 512
    n_ubatch: int = 512
    swa_full: bool = True
    flash_attn: bool = False


@dataclass(frozen=True)
class Overhead:
    """Runtime overhead in bytes, by named part, with the formula behind it."""

    parts: dict[str, int]
    basis: str

    @property
    def total(self) -> int:
        """The sum of the parts."""
        return sum(self.parts.values())


# ---------------------------------------------------------------- KV cache


def kv_cache_tokens(shape: ModelShape, tokens: int) -> int:
    """Count cached token-layers: ``tokens`` per full layer, ``min(window, tokens)`` if sliding."""
    return sum(tokens if w is None else min(w, tokens) for w in shape.windows())


def kv_cache_bytes(shape: ModelShape, tokens: int, batch: int = 1, kv_dtype: str = "f16") -> int:
    """Bytes of K and V for ``batch`` sequences of ``tokens`` tokens.

    ``sum over layers of kv_heads x (k_head_dim + v_head_dim) x cached_tokens x
    batch x bytes(kv_dtype)``, which is ``2 x layers x kv_heads x head_dim x
    tokens x batch x bytes`` when every layer attends to the full context.
    """
    if tokens < 0 or batch < 1:
        raise ConfigError("tokens must be >= 0 and batch >= 1")
    per_token_layer = shape.num_kv_heads * (shape.head_dim + shape.v_head_dim)
    elements = per_token_layer * kv_cache_tokens(shape, tokens) * batch
    return round(elements * kv_bytes_per_element(kv_dtype))


def llamacpp_n_ctx(context: int) -> int:
    """Return the context llama.cpp allocates: ``context`` rounded up to 256 cells."""
    return -(-context // LLAMACPP_CTX_PAD) * LLAMACPP_CTX_PAD


def llamacpp_kv_cache_bytes(
    shape: ModelShape,
    context: int,
    batch: int = 1,
    kv_dtype: str = "f16",
    settings: LlamaCppSettings | None = None,
) -> int:
    """Return the KV buffer llama.cpp allocates for ``batch`` sequences of ``context`` tokens.

    ``context`` is per sequence, as llmpick's ``llamacpp`` backend allocates it
    (``n_ctx`` per slot, ``parallel`` slots): one unified cache of ``n_ctx =
    batch x pad256(context)`` cells (``llama_kv_cache: size = … (N cells, L
    layers, b seqs)`` in llama.cpp's log). A sliding layer holds ``min(n_ctx,
    pad256(window x batch + n_ubatch))`` cells unless ``settings.swa_full`` is
    True (full size, llama.cpp's default).
    """
    settings = settings or LlamaCppSettings()
    n_ctx = llamacpp_n_ctx(context) * batch
    per_token_layer = shape.num_kv_heads * (shape.head_dim + shape.v_head_dim)
    cells = 0
    for window in shape.windows():
        if window is None or settings.swa_full:
            cells += n_ctx
        else:
            cells += min(n_ctx, llamacpp_n_ctx(window * batch + settings.n_ubatch))
    return round(per_token_layer * cells * kv_bytes_per_element(kv_dtype))


# ---------------------------------------------------------------- weights


def weights_bytes(shape: ModelShape, quant: Quantization | None) -> tuple[int, bool, str]:
    """(bytes, exact, basis) for the weights of ``shape`` stored as ``quant``.

    ``quant`` None means "as the file is": exact for a GGUF, the native dtype
    otherwise.
    """
    if shape.weights_bytes_exact is not None and (
        quant is None or _same_as_file(quant, shape.file_quant)
    ):
        return (
            shape.weights_bytes_exact,
            True,
            f"exact: sum of the GGUF file's tensor sizes ({shape.file_quant or 'as stored'})",
        )
    if quant is None:
        from llmpick.fit.quant import get_quantization

        quant = get_quantization(shape.native_dtype)
    embed = shape.embedding_params if not quant.quantizes_embeddings else 0
    body = max(shape.params_total - embed, 0)
    total = body * quant.bits_per_weight / 8 + embed * 2
    basis = (
        f"{shape.params_total:,} params x {quant.bits_per_weight:.4g} bits / 8 ({quant.name})"
        if not embed
        else f"{body:,} params x {quant.bits_per_weight:.4g} bits / 8 ({quant.name}) + "
        f"{embed:,} embedding/LM-head params x 2 bytes (not quantized)"
    )
    return round(total), False, basis


def _same_as_file(quant: Quantization, file_quant: str | None) -> bool:
    if file_quant is None:
        return False
    return quant.name.upper() == file_quant.upper() or (
        quant.name in ("fp16", "bf16", "fp32")
        and file_quant.upper() == {"fp16": "F16", "bf16": "BF16", "fp32": "F32"}[quant.name]
    )


def active_weights_bytes(shape: ModelShape, weights: int) -> int:
    """Weights read per generated token: all of them, or the active share of an MoE."""
    if not shape.is_moe:
        return weights
    if shape.expert_weights_bytes_exact and shape.num_experts and shape.num_experts_per_tok:
        experts = shape.expert_weights_bytes_exact
        return round(weights - experts + experts * shape.num_experts_per_tok / shape.num_experts)
    return round(weights * shape.params_active / shape.params_total)


# ---------------------------------------------------------------- overhead


def llamacpp_overhead(
    shape: ModelShape,
    context: int,
    batch: int,
    device: Device,
    repack_bytes: int,
    settings: LlamaCppSettings | None,
) -> Overhead:
    """llama.cpp's compute and output buffers, CPU repack and host process or CUDA context."""
    s = settings or LlamaCppSettings()
    n_ctx = llamacpp_n_ctx(context * batch)
    n_ub = min(s.n_ubatch, s.n_batch, n_ctx)
    ffn = shape.intermediate_size or 4 * shape.hidden_size
    activations = 4 * n_ub * (3 * shape.hidden_size + 2 * ffn)
    scores = 0 if s.flash_attn else 4 * n_ub * n_ctx * (shape.num_attention_heads + 1)
    attention_phase = scores + activations
    logits_phase = 4 * n_ub * (shape.vocab_size + 3 * shape.hidden_size)
    output = 4 * shape.vocab_size * batch
    if device.kind == "cpu":
        work = 0 if s.flash_attn else 2 * n_ub * n_ctx * shape.num_attention_heads
        parts = {
            "compute_buffer": attention_phase,
            "cpu_work_buffer": work,
            "output_buffer": output,
            "cpu_repack": repack_bytes,
            "host_process": LLAMACPP_HOST_BASE_BYTES
            + LLAMACPP_BYTES_PER_VOCAB_ENTRY * shape.vocab_size,
        }
        basis = (
            "llama.cpp on CPU: compute buffer pages touched by a filled context "
            f"(4 x n_ubatch {n_ub} x n_ctx {n_ctx} x (heads+1) + activations), ggml work "
            "buffer, last-token logits, repacked Q4 tensors, Python + llama-cpp-python "
            "46 MiB + 240 B per vocab entry"
        )
    else:
        parts = {
            "compute_buffer": max(attention_phase, logits_phase),
            "output_buffer": output,
            "cuda_context": CUDA_CONTEXT_BYTES if device.kind in ("gpu", "generic") else 0,
        }
        basis = (
            "llama.cpp fully offloaded: compute buffer reserved for the worst micro-batch "
            f"(max of logits 4 x {n_ub} x (vocab + 3 x hidden) and attention 4 x {n_ub} x "
            f"n_ctx {n_ctx} x (heads+1) + activations; flash attention off as in "
            "llama-cpp-python), last-token logits"
            + (", CUDA context 300 MiB (assumed)" if device.kind in ("gpu", "generic") else "")
        )
    return Overhead(parts=parts, basis=basis)


def vllm_overhead(shape: ModelShape) -> Overhead:
    """Memory vLLM adds: profiled activation peak, CUDA graphs and CUDA context."""
    ffn = shape.intermediate_size or 4 * shape.hidden_size
    activation = VLLM_MAX_NUM_BATCHED_TOKENS * (4 * shape.hidden_size + 2 * ffn) * 2
    sampler = VLLM_MAX_NUM_SEQS * shape.vocab_size * 4
    return Overhead(
        parts={
            "activation_peak": activation + sampler,
            "cuda_graphs": VLLM_CUDA_GRAPHS_BYTES,
            "cuda_context": VLLM_CUDA_CONTEXT_BYTES,
        },
        basis=(
            "vLLM: profiled activation peak for max_num_batched_tokens 8192 x (4 x hidden + "
            "2 x intermediate) x 2 B + sampler logits 256 x vocab x 4 B, CUDA graphs 0.5 GiB, "
            "CUDA context 0.5 GiB (assumptions); the KV pool is whatever of "
            "gpu_memory_utilization 0.9 x memory is left"
        ),
    )


def transformers_overhead(
    shape: ModelShape, context: int, batch: int, device: Device, weights: int
) -> Overhead:
    """Memory transformers adds: prefill activations, allocator slack, CUDA/torch base."""
    ffn = shape.intermediate_size or 4 * shape.hidden_size
    activations = batch * context * (4 * shape.hidden_size + 3 * ffn) * 2
    logits = batch * shape.vocab_size * 4
    base = TRANSFORMERS_CPU_BASE_BYTES if device.kind == "cpu" else TRANSFORMERS_CUDA_CONTEXT_BYTES
    return Overhead(
        parts={
            "activations": activations + logits,
            "allocator_slack": weights // 10,
            "runtime_base": base,
        },
        basis=(
            "transformers: prefill activations batch x tokens x (4 x hidden + 3 x "
            "intermediate) x 2 B + last-token logits in f32, 10% of weights for the caching "
            "allocator, "
            + ("Python + torch 400 MiB" if device.kind == "cpu" else "CUDA context 500 MiB")
            + " (assumptions)"
        ),
    )
