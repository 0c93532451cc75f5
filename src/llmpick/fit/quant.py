"""Quantization formats and how many bits each stores per weight.

Weights bytes for a parameter count are ``params x bits_per_weight / 8``. The
bits per weight (bpw) include each format's scale/zero-point overhead:

- Floats (fp32, bf16/fp16, fp8): the element size; fp8 adds one scale per
  tensor or channel, which is negligible.
- ``int8`` (bitsandbytes LLM.int8 / W8A8): 8 bits plus one fp32 scale per row,
  negligible for LLM-sized matrices.
- ``nf4`` (bitsandbytes 4-bit): 4 bits + one fp32 absmax per 64-weight block =
  4.5 bpw; ``nf4-dq`` (double quantization) stores the absmax as 8 bits with an
  fp32 scale per 256 blocks: 4 + 8/64 + 32/(64x256) = 4.127 bpw (QLoRA paper).
- ``gptq`` / ``awq`` (4-bit, group size 128): 4 bits + an fp16 scale and a
  4-bit zero point per group of 128 = 4 + 20/128 = 4.156 bpw. ``int4`` is an
  alias of the same layout.
  bitsandbytes, GPTQ and AWQ leave the embeddings and the LM head in 16 bits
  (``quantizes_embeddings = False``).
- GGUF types: uniform types (Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, IQ*) take their bpw
  from ggml's block layout, read from ``gguf.constants.GGML_QUANT_SIZES``
  (block size in weights, block bytes), not hard-coded here. The K-quant
  *mixtures* (Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M) keep some tensors at a
  higher type, so their bpw is the figure llama.cpp measured on Llama 2 7B
  (tools/quantize/README.md); Q6_K is a near-uniform mixture and its
  measured 6.56 bpw equals the block layout's 6.5625.

Run ``llmpick fit --help`` for the names; :func:`get_quantization` accepts
names in any case with ``-``/``_`` interchangeable (``q4_k_m``, ``Q4-K-M``).
"""

from __future__ import annotations

import difflib
import functools
from typing import Literal

from pydantic import BaseModel, ConfigDict

from llmpick.errors import QuantizationError

__all__ = [
    "KV_CACHE_DTYPES",
    "QUALITY_ORDER",
    "Quantization",
    "get_quantization",
    "kv_bytes_per_element",
    "list_quantizations",
]

Family = Literal["float", "fp8", "int8", "bitsandbytes", "gptq", "awq", "gguf", "mxfp4"]

GGML_TYPE_TRAITS_SOURCE = (
    "gguf.constants.GGML_QUANT_SIZES (ggml type traits: block size and block bytes), "
    "https://github.com/ggml-org/llama.cpp/blob/master/gguf-py/gguf/constants.py"
)
LLAMACPP_QUANTIZE_SOURCE = (
    "llama.cpp tools/quantize/README.md, bpw measured on Llama 2 7B, "
    "https://github.com/ggml-org/llama.cpp/blob/master/tools/quantize/README.md"
)
QLORA_SOURCE = "QLoRA paper (Dettmers et al. 2023), https://arxiv.org/abs/2305.14314"

# K-quant mixtures: llama.cpp's measured bpw on Llama 2 7B (see module docstring).
_GGUF_MIXTURE_BPW: dict[str, float] = {
    "Q2_K": 3.35,
    "Q3_K_S": 3.50,
    "Q3_K_M": 3.91,
    "Q3_K_L": 4.27,
    "Q4_K_S": 4.58,
    "Q4_K_M": 4.84,
    "Q5_K_S": 5.52,
    "Q5_K_M": 5.68,
    "Q6_K": 6.56,
}
# Uniform GGUF file types: the ggml tensor type used for (nearly) all 2-D tensors.
_GGUF_UNIFORM = (
    "F32",
    "F16",
    "BF16",
    "Q8_0",
    "Q5_1",
    "Q5_0",
    "Q4_1",
    "Q4_0",
    "IQ4_NL",
    "IQ4_XS",
    "IQ3_S",
    "IQ3_XXS",
    "IQ2_S",
    "IQ2_XS",
    "IQ2_XXS",
    "IQ1_M",
    "IQ1_S",
)

#: Quantizations from highest to lowest quality; the recommender tries them in this order.
QUALITY_ORDER: tuple[str, ...] = (
    "bf16",
    "fp8",
    "Q8_0",
    "int8",
    "Q6_K",
    "Q5_K_M",
    "Q4_K_M",
    "awq",
    "gptq",
    "nf4",
    "Q4_0",
    "Q3_K_M",
    "Q2_K",
)


class Quantization(BaseModel):
    """A weight format and its storage cost."""

    model_config = ConfigDict(frozen=True)

    name: str
    family: Family
    bits_per_weight: float
    quantizes_embeddings: bool = True
    ggml_type: str | None = None
    basis: str
    source: str
    runtimes: tuple[str, ...]

    @property
    def bytes_per_weight(self) -> float:
        """Bytes per weight (bits / 8)."""
        return self.bits_per_weight / 8


def _ggml_bpw(type_name: str) -> float:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
    return type_size * 8 / block_size


@functools.cache
def _table() -> dict[str, Quantization]:
    # The names of fit.runtimes.RUNTIMES (not importable here: runtimes imports this module);
    # tests/test_fit.py checks that the two agree.
    every_runtime = ("llamacpp", "vllm", "transformers")
    hf_runtimes = ("vllm", "transformers")
    entries = [
        Quantization(
            name="fp32",
            family="float",
            bits_per_weight=32,
            basis="IEEE 754 single precision, 4 bytes per weight",
            source="IEEE 754",
            runtimes=every_runtime,
            ggml_type="F32",
        ),
        Quantization(
            name="bf16",
            family="float",
            bits_per_weight=16,
            basis="bfloat16, 2 bytes per weight (the release dtype of most open models)",
            source="IEEE 754 / Google bfloat16",
            runtimes=every_runtime,
            ggml_type="BF16",
        ),
        Quantization(
            name="fp16",
            family="float",
            bits_per_weight=16,
            basis="IEEE half precision, 2 bytes per weight",
            source="IEEE 754",
            runtimes=every_runtime,
            ggml_type="F16",
        ),
        Quantization(
            name="fp8",
            family="fp8",
            bits_per_weight=8,
            basis="FP8 E4M3 weights, 1 byte each; per-tensor/channel scales are negligible",
            source="vLLM FP8 docs, https://docs.vllm.ai/en/latest/features/quantization/fp8.html",
            runtimes=hf_runtimes,
        ),
        Quantization(
            name="int8",
            family="int8",
            bits_per_weight=8,
            basis="8-bit integers, one fp32 scale per row (negligible); embeddings stay 16-bit",
            source="LLM.int8() (Dettmers et al. 2022), https://arxiv.org/abs/2208.07339",
            runtimes=hf_runtimes,
            quantizes_embeddings=False,
        ),
        Quantization(
            name="nf4",
            family="bitsandbytes",
            bits_per_weight=4 + 32 / 64,
            basis="bitsandbytes NF4: 4 bits + fp32 absmax per 64-weight block = 4.5 bpw; "
            "embeddings and LM head stay 16-bit",
            source=QLORA_SOURCE,
            runtimes=hf_runtimes,
            quantizes_embeddings=False,
        ),
        Quantization(
            name="nf4-dq",
            family="bitsandbytes",
            bits_per_weight=4 + 8 / 64 + 32 / (64 * 256),
            basis="bitsandbytes NF4 with double quantization: 4 + 8/64 + 32/(64x256) = 4.127 "
            "bpw; embeddings and LM head stay 16-bit",
            source=QLORA_SOURCE,
            runtimes=hf_runtimes,
            quantizes_embeddings=False,
        ),
        Quantization(
            name="gptq",
            family="gptq",
            bits_per_weight=4 + (16 + 4) / 128,
            basis="GPTQ 4-bit, group size 128: 4 bits + fp16 scale + 4-bit zero per 128 "
            "weights = 4.156 bpw; embeddings and LM head stay 16-bit",
            source="GPTQ (Frantar et al. 2022), https://arxiv.org/abs/2210.17323",
            runtimes=hf_runtimes,
            quantizes_embeddings=False,
        ),
        Quantization(
            name="awq",
            family="awq",
            bits_per_weight=4 + (16 + 4) / 128,
            basis="AWQ 4-bit, group size 128: 4 bits + fp16 scale + 4-bit zero per 128 "
            "weights = 4.156 bpw; embeddings and LM head stay 16-bit",
            source="AWQ (Lin et al. 2023), https://arxiv.org/abs/2306.00978",
            runtimes=hf_runtimes,
            quantizes_embeddings=False,
        ),
        Quantization(
            name="MXFP4",
            family="mxfp4",
            bits_per_weight=_ggml_bpw("MXFP4"),
            basis="OCP microscaling FP4: 4-bit E2M1 + one 8-bit E8M0 scale per 32 weights = "
            "4.25 bpw (ggml block layout); the format gpt-oss ships its MoE weights in, "
            "embeddings and LM head counted at 16 bits (attention weights, also 16-bit in "
            "the release, are counted at 4.25: about 0.9 GB low for gpt-oss-20b, 1.4 GB for 120b)",
            source="OCP Microscaling Formats (MX) v1.0 spec; " + GGML_TYPE_TRAITS_SOURCE,
            runtimes=every_runtime,
            quantizes_embeddings=False,
            ggml_type="MXFP4",
        ),
    ]
    for name, bpw in _GGUF_MIXTURE_BPW.items():
        entries.append(
            Quantization(
                name=name,
                family="gguf",
                bits_per_weight=bpw,
                basis=f"GGUF {name} mixture, {bpw} bpw as measured by llama.cpp on Llama 2 7B",
                source=LLAMACPP_QUANTIZE_SOURCE,
                runtimes=("llamacpp",),
                ggml_type=name.split("_K")[0] + "_K",
            )
        )
    for type_name in _GGUF_UNIFORM:
        if type_name in ("F32", "F16", "BF16"):
            continue
        bpw = _ggml_bpw(type_name)
        entries.append(
            Quantization(
                name=type_name,
                family="gguf",
                bits_per_weight=bpw,
                basis=f"GGUF {type_name}: ggml block layout, {bpw:.4g} bpw",
                source=GGML_TYPE_TRAITS_SOURCE,
                runtimes=("llamacpp",),
                ggml_type=type_name,
            )
        )
    return {_key(q.name): q for q in entries}


_ALIASES = {
    "f32": "fp32",
    "float32": "fp32",
    "f16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "int4": "awq",
    "awqint4": "awq",
    "gptqint4": "gptq",
    "bnb4": "nf4",
    "bnb4bit": "nf4",
    "4bit": "nf4",
    "bnb8": "int8",
    "8bit": "int8",
    "llmint8": "int8",
    "fp8e4m3": "fp8",
    "e4m3": "fp8",
    "q4km": "Q4_K_M",
    "q5km": "Q5_K_M",
    "q3km": "Q3_K_M",
    "mxfp4": "MXFP4",
}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def list_quantizations() -> list[Quantization]:
    """Every known quantization, in table order."""
    return list(_table().values())


def get_quantization(name: str) -> Quantization:
    """Look up the quantization called ``name`` (case and ``-``/``_`` insensitive).

    Raises :class:`~llmpick.errors.QuantizationError` with close matches when
    the name is unknown.
    """
    table = _table()
    key = _key(name)
    key = _key(_ALIASES.get(key, key))
    if key in table:
        return table[key]
    names = [q.name for q in table.values()]
    close = difflib.get_close_matches(name.upper(), [n.upper() for n in names], n=3, cutoff=0.5)
    by_upper = {n.upper(): n for n in names}
    hint = (
        "did you mean: " + ", ".join(by_upper[c] for c in close) + "?"
        if close
        else "known: " + ", ".join(names)
    )
    raise QuantizationError(f"unknown quantization {name!r}", hint)


#: KV cache element types accepted by ``--kv-dtype``, with llama.cpp/vLLM names.
KV_CACHE_DTYPES: dict[str, str] = {
    "f32": "F32",
    "f16": "F16",
    "bf16": "BF16",
    "fp8": "fp8",
    "q8_0": "Q8_0",
    "q5_1": "Q5_1",
    "q5_0": "Q5_0",
    "q4_1": "Q4_1",
    "q4_0": "Q4_0",
    "iq4_nl": "IQ4_NL",
}


def kv_bytes_per_element(kv_dtype: str) -> float:
    """Bytes per cached K or V element for ``kv_dtype`` (``f16`` = 2, ``q8_0`` = 34/32...).

    GGUF block types (q8_0, q4_0...) take their size from ggml's block layout.
    """
    key = kv_dtype.lower().replace("-", "_")
    key = {"fp16": "f16", "float16": "f16", "fp32": "f32", "fp8_e4m3": "fp8", "e4m3": "fp8"}.get(
        key, key
    )
    if key not in KV_CACHE_DTYPES:
        raise QuantizationError(
            f"unknown KV cache dtype {kv_dtype!r}",
            "use one of: " + ", ".join(KV_CACHE_DTYPES),
        )
    if key == "fp8":
        return 1.0
    return _ggml_bpw(KV_CACHE_DTYPES[key]) / 8
