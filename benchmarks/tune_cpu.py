"""Training speed and memory of ``llmpick tune`` (SmolLM2-135M LoRA on this CPU).

Runs the library's training (no proof) on a generated task ("CASE-<ticket
number>", the test's) and prints, all measured here unless marked:

- training tokens/s (prompt + answer tokens, no padding, per second of steps);
- the process's peak RSS (model load, dequantization and training) against
  fit's training-memory estimate (estimated; its basis is printed);
- the held-out loss before and after.

Run: ``python benchmarks/tune_cpu.py [--steps 12] [--batch 4] [--rank 8] [--model ALIAS]``.
On a CUDA machine it trains in bf16 there (add ``--qlora`` for NF4; needs bitsandbytes).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
from pathlib import Path

from llmpick.context import Context
from llmpick.tune import LoraSettings, TrainSettings, TuneOptions, run_tune

_TEXTS = ["I was charged twice", "refund my payment", "my invoice is wrong", "I cannot log in"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--qlora", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tune-bench-"))
    rng = random.Random(0)
    with (work / "tickets.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["system", "prompt", "expected"])
        writer.writeheader()
        for _ in range(args.rows):
            n = rng.randint(100, 999)
            writer.writerow({"system": "Reply with the case code.",
                             "prompt": f"Ticket {n}: {rng.choice(_TEXTS)}",
                             "expected": f"CASE-{n}"})  # fmt: skip
    options = TuneOptions(
        data=work / "tickets.csv", out=work / "tuned", evaluate=False, checkpoint_every=args.steps,
        lora=LoraSettings(rank=args.rank, alpha=2 * args.rank),
        train=TrainSettings(learning_rate=1e-3, max_steps=args.steps, batch_size=args.batch,
                            max_seq_len=128, qlora=args.qlora,
                            gradient_checkpointing=args.gradient_checkpointing),
    )  # fmt: skip
    report = run_tune(Context(), args.model, options)
    t = report.training
    est = report.memory_estimate or {}
    mib = 2**20
    print(
        json.dumps(
            {
                "model": args.model, "device": t.device, "dtype": t.dtype, "steps": t.state.step,
                "batch": args.batch, "rank": args.rank, "trainable_params": t.trainable_params,
                "training_tokens_per_second_measured": round(t.tokens_per_second or 0, 2),
                "peak_memory_mib_measured": round((t.peak_memory_bytes or 0) / mib),
                "peak_memory_kind": t.peak_memory_kind,
                "training_memory_mib_estimated": round(est.get("total_bytes", 0) / mib),
                "estimate_basis": est.get("basis"),
                "holdout_loss_first_last": [t.state.holdout_loss[0][1],
                                            t.state.holdout_loss[-1][1]],
            },
            indent=2,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
