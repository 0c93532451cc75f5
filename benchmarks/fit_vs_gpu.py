"""fit's transformers-runtime estimates against a real CUDA GPU, side by side.

For each model the catalog's architecture (from the model's config.json) is
built with random bf16 weights directly on the GPU — no download — and run
with transformers as the ``hf`` backend runs it. Measured, next to fit's
estimate for the same model, context, batch and device:

- weights: ``torch.cuda.memory_allocated`` after loading;
- KV cache: memory added by a prefill of ``--prompt-tokens`` (logits of the
  last position only);
- peak: ``max_memory_allocated`` over prefill + decode, plus the CUDA context
  read from NVML for this process;
- decode tokens/s (batch 1, ``--new-tokens`` greedy tokens after the prompt)
  and prefill seconds.

Prints each pair and the ratio measured / estimated.

    python benchmarks/fit_vs_gpu.py [--models ID ...] [--prompt-tokens 4096]
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import torch
import transformers

from llmpick.catalog import load_catalog
from llmpick.fit import fit_model
from llmpick.hardware import get_device

DEFAULT_MODELS = [
    "Qwen/Qwen2.5-0.5B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
]
GIB = 1024**3


def gpu_device_name() -> str:
    name = torch.cuda.get_device_name(0).lower()
    for key in ("h200", "h100", "a100", "l40s", "l4", "a10g", "4090"):
        if key in name:
            return key
    return "local"


def build(card_id: str) -> torch.nn.Module:
    arch = load_catalog().get(card_id).architecture
    config = transformers.AutoConfig.for_model(
        arch.model_type,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        head_dim=arch.head_dim,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        vocab_size=arch.vocab_size,
        tie_word_embeddings=bool(arch.tie_word_embeddings),
        max_position_embeddings=max(arch.max_position_embeddings or 0, 32768),
    )
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return model.eval()


def nvml_process_bytes() -> int | None:
    try:
        import os

        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid():
                return int(proc.usedGpuMemory)
    except Exception:
        return None
    return None


def measure(card_id: str, prompt_tokens: int, new_tokens: int) -> dict[str, float | None]:
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    model = build(card_id)
    torch.cuda.synchronize()
    weights = torch.cuda.memory_allocated() - base
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, prompt_tokens), device="cuda")
    with torch.inference_mode():
        before = torch.cuda.memory_allocated()
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        torch.cuda.synchronize()
        kv = torch.cuda.memory_allocated() - before - out.logits.numel() * out.logits.element_size()
        del out
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        kwargs = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kwargs)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kwargs)
        torch.cuda.synchronize()
        prefill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=new_tokens + 1, min_new_tokens=new_tokens + 1, **kwargs)
        torch.cuda.synchronize()
        decode_s = time.perf_counter() - t0 - prefill_s
    peak = torch.cuda.max_memory_allocated() - base
    process = nvml_process_bytes()
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return {
        "weights_bytes": weights,
        "kv_cache_bytes": kv,
        "peak_allocated_bytes": peak,
        "nvml_process_bytes": process,
        "prefill_s": prefill_s,
        "decode_tokens_per_second": new_tokens / decode_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--prompt-tokens", type=int, default=4096)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    device = get_device(gpu_device_name())
    print(f"GPU: {torch.cuda.get_device_name(0)} -> fit device {device.name}")
    rows = []
    for card_id in args.models:
        est = fit_model(
            card_id,
            quant="bf16",
            context=args.prompt_tokens + args.new_tokens,
            prompt_tokens=args.prompt_tokens,
            runtime="transformers",
            device=device,
        )
        got = measure(card_id, args.prompt_tokens, args.new_tokens)
        context_bytes = est.overhead_breakdown.get("runtime_base", 0)
        pairs = {
            "weights": (got["weights_bytes"], est.weights_bytes),
            "kv cache": (got["kv_cache_bytes"], est.kv_cache_bytes),
            "peak (allocator)": (got["peak_allocated_bytes"], est.total_bytes - context_bytes),
            "process (NVML)": (got["nvml_process_bytes"], est.total_bytes),
            "decode tok/s": (got["decode_tokens_per_second"], est.decode_tokens_per_second),
            "prefill s": (got["prefill_s"], est.time_to_first_token_s),
        }
        print(f"\n{card_id}  prompt {args.prompt_tokens} + {args.new_tokens} new tokens, batch 1")
        for name, (measured, estimated) in pairs.items():
            if measured is None or not estimated:
                print(f"  {name:18s} measured {measured}  estimated {estimated}")
                continue
            scale = GIB if "tok" not in name and " s" not in name else 1
            unit = "GiB" if scale == GIB else ""
            print(
                f"  {name:18s} measured {measured / scale:10.3f} {unit:3s} "
                f"estimated {estimated / scale:10.3f} {unit:3s} ratio {measured / estimated:6.3f}"
            )
        rows.append({"model": card_id, "measured": got, "estimate": est.model_dump(mode="json")})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
