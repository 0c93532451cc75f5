"""Which quantization to run a model at: the one an engineer would load on this runtime.

Each runtime has a ladder of the formats people run on it, highest precision first:

- llama.cpp: Q8_0, Q6_K, Q5_K_M, Q4_K_M (GGUF K-quants); bf16 only when asked:
  llama.cpp's scoreboard puts Q8_0 at -0.019% Mean Δp against FP16, so 16 bits double
  the bytes and halve the decode rate for nothing measurable;
- vLLM: fp8, then AWQ / GPTQ 4-bit;
- transformers: bf16, then bitsandbytes int8 and NF4.

A model the maker releases quantized (gpt-oss in MXFP4, ``native_quant`` on its card)
runs in that format on every runtime, at no loss against its own benchmarks.

When no rung fits at a long context (16K tokens or more) with an f16 KV cache, the
ladder is tried again with the cache quantized (q8_0 on llama.cpp, fp8 on vLLM), as an
engineer would for long documents, and the reason says so.

The pick is the highest rung that fits with :data:`HEADROOM` of the memory budget to spare
(at the asked context and concurrency) and reaches the use case's decode floor; when no
rung reaches the floor, the fastest one that fits (and the candidate is demoted). Below
4 bits (Q3_K_M, Q2_K) only when the caller allows it: the recommender does so only when
no model fits at 4 bits or more, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llmpick.fit import FitResult, fit_model, get_quantization, shape_from_card

if TYPE_CHECKING:
    from llmpick.catalog import ModelCard
    from llmpick.fit.calibration import Calibration
    from llmpick.hardware import Device

__all__ = ["HEADROOM", "LADDERS", "SUB_4_BIT", "QuantChoice", "choose_quant", "ladder"]

#: from this context on, a KV cache that does not fit at f16 is retried quantized
LONG_CONTEXT = 16384
KV_QUANT = {"llamacpp": "q8_0", "vllm": "fp8"}
KV_FLAG = {
    "llamacpp": "llama.cpp --cache-type-k q8_0 --cache-type-v q8_0",
    "vllm": "vllm --kv-cache-dtype fp8",
}

#: share of the memory budget left free (allocator fragmentation, activation spikes,
#: a longer prompt than planned)
HEADROOM = 0.05

LADDERS: dict[str, tuple[str, ...]] = {
    "llamacpp": ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M"),
    "vllm": ("fp8", "awq", "gptq"),
    "transformers": ("bf16", "int8", "nf4"),
}
SUB_4_BIT: dict[str, tuple[str, ...]] = {
    "llamacpp": ("Q3_K_M", "Q2_K"),
    "vllm": (),
    "transformers": (),
}


@dataclass
class QuantChoice:
    """The chosen fit (None when nothing fits) and why it was chosen."""

    fit: FitResult | None
    why: str
    sub_4_bit: bool = False
    below_floor: bool = False
    native: bool = False
    #: the smallest format tried, for the "does not fit" message
    smallest: FitResult | None = None
    tried: list[str] = field(default_factory=list)


def ladder(card: ModelCard, runtime: str, quant: str | None, sub_4_bit: bool) -> list[str]:
    """The formats to try for ``card`` on ``runtime``, highest precision first."""
    if quant:
        return [get_quantization(quant).name]
    if card.native_quant is not None:
        return [get_quantization(card.native_quant.name).name]
    rungs = list(LADDERS.get(runtime, ()))
    if sub_4_bit:
        rungs += SUB_4_BIT.get(runtime, ())
    return rungs


def _fits(result: FitResult) -> bool:
    budget = result.usable_memory_bytes
    if not result.fits:
        return False
    return budget is None or result.total_bytes <= (1 - HEADROOM) * budget


def choose_quant(
    card: ModelCard,
    *,
    runtime: str,
    device: Device,
    context: int,
    concurrency: int,
    floor_tokens_per_second: float,
    quant: str | None = None,
    sub_4_bit: bool = False,
    calibration: Calibration | None = None,
) -> QuantChoice:
    """Pick the format for ``card`` (see the module docstring)."""
    rungs = ladder(card, runtime, quant, sub_4_bit)

    def climb(kv_dtype: str) -> QuantChoice:
        return _climb(
            card,
            rungs,
            floor_tokens_per_second,
            quant,
            kv_dtype,
            calibration,
            context=context,
            concurrency=concurrency,
            runtime=runtime,
            device=device,
        )

    choice = climb("f16")
    kv8 = KV_QUANT.get(runtime)
    if choice.fit is None and kv8 and context >= LONG_CONTEXT:
        retry = climb(kv8)
        if retry.fit is not None:
            retry.why += (
                f"; KV cache at {kv8} (f16 does not fit at {context:,} tokens; {KV_FLAG[runtime]})"
            )
            return retry
    return choice


def _climb(
    card: ModelCard,
    rungs: list[str],
    floor_tokens_per_second: float,
    quant: str | None,
    kv_dtype: str,
    calibration: Calibration | None,
    *,
    context: int,
    concurrency: int,
    runtime: str,
    device: Device,
) -> QuantChoice:
    shape = shape_from_card(card)
    fitting: list[FitResult] = []
    smallest = None
    for name in rungs:
        result = fit_model(
            shape,
            quant=name,
            context=context,
            batch=concurrency,
            kv_dtype=kv_dtype,
            runtime=runtime,
            device=device,
            calibration=calibration,
        )
        if not _fits(result):
            smallest = result
            continue
        fitting.append(result)
        rate = result.decode_tokens_per_second
        if rate is None or rate >= floor_tokens_per_second or quant:
            break
    native = card.native_quant is not None and not quant
    if not fitting:
        return QuantChoice(None, "", smallest=smallest, tried=rungs, native=native)
    chosen = fitting[-1]
    rate = chosen.decode_tokens_per_second
    below = rate is not None and rate < floor_tokens_per_second and not quant
    if below:
        chosen = max(fitting, key=lambda r: r.decode_tokens_per_second or 0.0)
    sub4 = chosen.quant in SUB_4_BIT.get(runtime, ())
    why = _why(chosen, rungs, fitting, native, quant, below, floor_tokens_per_second, sub4)
    return QuantChoice(chosen, why, sub4, below, native, smallest, rungs)


def _why(
    chosen: FitResult,
    rungs: list[str],
    fitting: list[FitResult],
    native: bool,
    quant: str | None,
    below: bool,
    floor: float,
    sub4: bool,
) -> str:
    gib = (chosen.usable_memory_bytes or 0) / 2**30
    where = f"{chosen.total_bytes / 2**30:.1f} of {gib:.1f} GiB at {chosen.context:,} tokens" + (
        f" x {chosen.batch} sequences" if chosen.batch > 1 else ""
    )
    if quant:
        return f"quantization {chosen.quant}: pinned with --quant ({where})"
    if native:
        return (
            f"quantization {chosen.quant}: the maker's release format (its benchmarks were "
            f"measured on it; 16-bit copies are upcasts) ({where})"
        )
    index = rungs.index(chosen.quant)
    if below:
        return (
            f"quantization {chosen.quant}: no format reaches {floor:g} tokens/s here; the "
            f"fastest that fits ({where})"
        )
    if index == 0:
        reason = {
            "Q8_0": "the highest precision worth its bytes (bf16 doubles memory for "
            "-0.019% Mean Δp, llama.cpp scoreboard)",
            "fp8": "near-lossless at half the bytes of bf16",
            "bf16": "the release weights",
        }.get(chosen.quant, "the highest rung of this runtime's ladder")
        return f"quantization {chosen.quant}: {reason} ({where})"
    higher = ", ".join(rungs[:index])
    if sub4:
        return (
            f"quantization {chosen.quant} (below 4 bits): nothing at 4 bits or more fits "
            f"this device, so lower formats were allowed; expect a visible quality loss "
            f"({where})"
        )
    slower = len(fitting) > 1 and fitting[-1] is chosen
    if slower:
        return (
            f"quantization {chosen.quant}: binding constraint: speed; {fitting[0].quant} "
            f"fits but is estimated below {floor:g} tokens/s ({where})"
        )
    return (
        f"quantization {chosen.quant}: binding constraint: memory; {higher} do not fit "
        f"with {HEADROOM:.0%} headroom ({where})"
    )
