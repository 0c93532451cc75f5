"""Speed estimates from a roofline: decode is memory-bound, prefill compute-bound.

Decode (one token per sequence per step) reads every active weight once plus
the KV cache, so::

    decode_tokens_per_second = bandwidth x efficiency / bytes_read_per_token
    bytes_read_per_token     = active weights bytes (/ batch, shared by the batch)
                               + KV cache bytes of one sequence

An untied input embedding is only indexed (one row per token), so it is not
counted; a tied one is read whole for the logits. MoE models read only the
active experts. With a batch, every sequence gets that rate as long as the step
stays memory-bound (weights are read once per step for all of them).

Prefill (the prompt) is a batch of matrix products::

    time_to_first_token_s = 2 x active params x prompt tokens / (FLOPS x efficiency)

transformers (the ``hf`` backend) decodes eagerly, one Python-driven step
per token, so a step also pays a fixed launch/dispatch cost that grows with
depth; its decode step time is::

    bytes_read_per_token / (bandwidth x efficiency) + layers x per_layer_step_s

``TRANSFORMERS_PER_LAYER_STEP_S`` = 2.0 ms was measured on an NVIDIA H200
(transformers 5.17, torch 2.11, bf16, ``generate`` with its default dynamic
cache, batch 1): Qwen2.5-0.5B (24 layers) 51.5 ms/token, Qwen2.5-7B (28)
57.9 ms, Llama-3.1-8B (32) 65.0 ms, while the memory roofline predicts 0.3
to 4.6 ms (``benchmarks/fit_vs_gpu.py``, output kept in
``benchmarks/results/fit_vs_gpu-h200.txt``). A faster host CPU lowers it.
Checked on models not used to set it (same H200, ``fit_vs_gpu-h200-holdout.txt``):
measured / estimated decode 0.82 (Llama-3.2-3B), 0.92 (Qwen3-8B), 1.24
(Qwen2.5-14B).

Efficiencies are assumptions, tuned to public llama.cpp/vLLM numbers: decode
reaches ~70% of peak bandwidth on GPUs (llama.cpp on an RTX 4090 runs a 3.8 GB
Q4_0 7B at ~150-180 tokens/s), ~60% on Apple silicon, and ~100% of the
*measured* single-thread copy bandwidth on CPUs (llama.cpp's threads read
faster than one copying thread). Prefill reaches ~50% of dense BF16 tensor
FLOPS on GPUs and ~40% of the assumed CPU peak. Every figure is an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmpick.hardware.devices import Device

__all__ = [
    "DECODE_EFFICIENCY",
    "PREFILL_EFFICIENCY",
    "TRANSFORMERS_PER_LAYER_STEP_S",
    "SpeedEstimate",
    "estimate_speed",
]

DECODE_EFFICIENCY = {"gpu": 0.7, "apple": 0.6, "cpu": 1.0}
PREFILL_EFFICIENCY = {"gpu": 0.5, "apple": 0.5, "cpu": 0.4}
#: measured eager per-layer decode step cost of transformers on a GPU (see above)
TRANSFORMERS_PER_LAYER_STEP_S = 2.0e-3


@dataclass(frozen=True)
class SpeedEstimate:
    """Decode rate and time to first token, each None when the device lacks the figure."""

    decode_tokens_per_second: float | None
    time_to_first_token_s: float | None
    decode_basis: str
    prefill_basis: str


def estimate_speed(
    device: Device,
    *,
    bytes_per_step: float,
    kv_bytes_per_sequence: float,
    active_params: int,
    prompt_tokens: int,
    batch: int = 1,
    step_overhead_s: float = 0.0,
    step_overhead_basis: str = "",
) -> SpeedEstimate:
    """Roofline decode and prefill estimates for one device.

    ``bytes_per_step`` is the weights read per decode step (shared by the
    batch); ``kv_bytes_per_sequence`` the KV cache one sequence reads;
    ``step_overhead_s`` a fixed time every decode step adds (eager runtimes).
    """
    bandwidth = device.memory_bandwidth_bytes_per_s
    decode_eff = DECODE_EFFICIENCY.get(device.kind)
    if bandwidth and decode_eff:
        step_bytes = bytes_per_step + kv_bytes_per_sequence * batch
        decode = 1.0 / (step_bytes / (bandwidth * decode_eff) + step_overhead_s)
        decode_basis = (
            f"memory-bound: {device.memory_bandwidth_gb_s:g} GB/s x {decode_eff:g} efficiency / "
            f"{step_bytes / 1e9:.3g} GB read per step (active weights "
            f"{bytes_per_step / 1e9:.3g} GB + KV {kv_bytes_per_sequence / 1e9:.3g} GB x "
            f"batch {batch}); per sequence"
        )
        if step_overhead_s:
            decode_basis += (
                f"; plus {step_overhead_s * 1e3:.1f} ms per step ({step_overhead_basis})"
            )
    else:
        decode = None
        decode_basis = f"not estimated: {device.name} has no known memory bandwidth"
    flops = device.bf16_flops
    prefill_eff = PREFILL_EFFICIENCY.get(device.kind)
    if flops and prefill_eff and prompt_tokens > 0:
        work = 2 * active_params * prompt_tokens * batch
        ttft = work / (flops * prefill_eff)
        prefill_basis = (
            f"compute-bound: 2 x {active_params:,} active params x {prompt_tokens} prompt "
            f"tokens x batch {batch} / ({device.bf16_tflops:g} TFLOPS x {prefill_eff:g} "
            "efficiency)"
        )
    else:
        ttft = None
        prefill_basis = f"not estimated: {device.name} has no known FLOPS"
    return SpeedEstimate(
        decode_tokens_per_second=decode,
        time_to_first_token_s=ttft,
        decode_basis=decode_basis,
        prefill_basis=prefill_basis,
    )
