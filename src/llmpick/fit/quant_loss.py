"""Quality lost to weight quantization: a sourced default table until measured values exist.

``quality_loss`` is the fraction of quality lost against the 16-bit weights. The
defaults are llama.cpp's LLaMA 3 8B scoreboard (``tools/perplexity/README.md``,
revision f364eb6f, no importance matrix, Wikitext-2): the *mean change in the
probability of the correct next token* (``Mean Δp``) of each format against the
FP16 weights, as a fraction. It is the scoreboard's measure closest to "how
often the model is right" (perplexity ratios overstate it; KLD has no accuracy
scale). Formats without a GGUF row are mapped by bit width, and say so. The
``quant`` helper (issue 13) supplies measured values per model; pass one as
``measured`` and it wins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["DEFAULT_LOSS_SOURCE", "LossLookup", "QuantLoss", "quality_loss"]

DEFAULT_LOSS_SOURCE = (
    "llama.cpp tools/perplexity/README.md, LLaMA 3 8b Scoreboard (revision f364eb6f, CUDA, "
    "no imatrix), Mean Δp vs FP16: https://github.com/ggml-org/llama.cpp/blob/master/"
    "tools/perplexity/README.md"
)
_DATA = "Wikitext-2 test, Meta-Llama-3-8B, mean change of the correct token's probability"

#: format -> (fraction lost, how it was obtained); GGUF rows are the scoreboard's own
_DEFAULTS: dict[str, tuple[float, str]] = {
    "bf16": (0.0, "reference weights"),
    "f16": (0.0, "reference weights"),
    "fp16": (0.0, "reference weights"),
    "f32": (0.0, "reference weights"),
    "Q8_0": (0.00019, _DATA + " (q8_0: -0.019%)"),
    "Q6_K": (0.00007, _DATA + " (q6_K: -0.007%)"),
    "Q5_K_M": (0.00114, _DATA + " (q5_K_M: -0.114%)"),
    "Q5_K_S": (0.00223, _DATA + " (q5_K_S: -0.223%)"),
    "Q4_K_M": (0.00596, _DATA + " (q4_K_M: -0.596%)"),
    "Q4_K_S": (0.00927, _DATA + " (q4_K_S: -0.927%)"),
    "Q4_0": (0.01588, _DATA + " (q4_0: -1.588%)"),
    "Q3_K_L": (0.01532, _DATA + " (q3_K_L: -1.532%)"),
    "Q3_K_M": (0.01990, _DATA + " (q3_K_M: -1.990%)"),
    "Q3_K_S": (0.05604, _DATA + " (q3_K_S: -5.604%)"),
    "Q2_K": (0.09123, _DATA + " (q2_K: -9.123%)"),
    # no row of their own: taken as the GGUF format of the same bit width
    "fp8": (0.00019, "no own row: taken as Q8_0 (8 bits)"),
    "int8": (0.00019, "no own row: taken as Q8_0 (8 bits)"),
    "awq": (0.00596, "no own row: taken as Q4_K_M (4 bits)"),
    "gptq": (0.00596, "no own row: taken as Q4_K_M (4 bits)"),
    "nf4": (0.00927, "no own row: taken as Q4_K_S (4 bits, no mixed precision)"),
}


class QuantLoss(BaseModel):
    """How much quality one quantization loses, and where the figure comes from."""

    quant: str
    quality_loss: float = Field(ge=0, le=1)
    basis: Literal["measured", "sourced default"]
    source: str
    data: str


#: ``(catalog_id, quant) -> measured loss or None``: what ``llmpick quant`` stored
#: (:func:`llmpick.fit.measured_loss.loss_lookup`), for ``recommend`` and ``choose``
LossLookup = Callable[[str, str], QuantLoss | None]


def quality_loss(
    catalog_id: str | None, quant: str, measured: QuantLoss | None = None
) -> QuantLoss:
    """The quality lost by ``catalog_id`` at ``quant``: the measured value, else the default.

    An unknown format is taken as lossless with the data saying so (no figure to use).
    """
    if measured is not None and measured.quant.lower() == quant.lower():
        return measured
    key = next((k for k in _DEFAULTS if k.lower() == quant.lower()), None)
    if key is None:
        return QuantLoss(
            quant=quant,
            quality_loss=0.0,
            basis="sourced default",
            source="none",
            data=f"no figure for {quant}; counted as lossless",
        )
    loss, data = _DEFAULTS[key]
    del catalog_id  # defaults are per format; measured values (issue 13) are per model
    return QuantLoss(
        quant=key, quality_loss=loss, basis="sourced default", source=DEFAULT_LOSS_SOURCE, data=data
    )
