"""Speed and memory of each candidate here, cached in the store by identity and bench settings."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from llmpick.backends.base import sha256_text
from llmpick.backends.pool import ModelPool
from llmpick.backends.spec import ModelSpec
from llmpick.choose.models import ChooseOptions, _tell
from llmpick.context import Context


def _bench(
    context: Context,
    options: ChooseOptions,
    spec: ModelSpec,
    identity: dict[str, Any],
    store: Any,
    pool: ModelPool,
) -> tuple[dict[str, Any], bool]:
    """Return (bench document, reused?) for one model; measures only when not stored."""
    from llmpick.bench import BenchConfig, run_bench, save_bench
    from llmpick.bench.runner import config_summary

    config = BenchConfig(
        concurrency=tuple(sorted({1, options.concurrency})),
        prompt_tokens=options.bench_prompt_tokens,
        max_tokens=options.bench_max_tokens,
        requests=options.bench_requests,
        warmup=1,
        seed=options.seed,
        progress=lambda message: _tell(options, "bench", f"{spec.name}: {message}"),
    )
    settings = config_summary(config)
    key = sha256_text(json.dumps({"identity": identity, "settings": settings}, sort_keys=True))
    for row in store.db.execute(
        "SELECT config, result FROM bench_runs WHERE interrupted = 0 ORDER BY created_at DESC"
    ).fetchall():
        with contextlib.suppress(ValueError, TypeError):
            if json.loads(row["config"]).get("choose_key") == key:
                found: dict[str, Any] = json.loads(row["result"])
                return found, True
    result = run_bench(context, spec, config, pool=pool)
    save_bench(store, result, {**settings, "choose_key": key})
    return result.to_json(), False


def _performance(bench: dict[str, Any], eval_model: Any) -> dict[str, Any]:
    first = (bench.get("results") or [{}])[0]
    estimate = bench.get("estimate") or {}
    return {
        "device": bench.get("device"),
        "measured": {
            "time_to_first_token_s_p50": (first.get("time_to_first_token_s") or {}).get("p50"),
            "time_per_output_token_s_p50": (first.get("time_per_output_token_s") or {}).get("p50"),
            "output_tokens_per_second": first.get("output_tokens_per_second"),
            "peak_memory_bytes": bench.get("peak_memory_bytes"),
            "eval_latency_p50_s": eval_model.latency_s.p50 if eval_model else None,
            "eval_latency_p90_s": eval_model.latency_s.p90 if eval_model else None,
        },
        "estimated": {
            "decode_tokens_per_second": estimate.get("decode_tokens_per_second"),
            "time_to_first_token_s": estimate.get("time_to_first_token_s"),
            "total_bytes": estimate.get("total_bytes"),
            "basis": estimate.get("basis"),
        },
        "ratio": bench.get("ratio") or {},
        "settings": {
            "prompt_tokens": bench.get("prompt_tokens"),
            "max_tokens": bench.get("max_tokens"),
            "requests": first.get("completed"),
        },
        "notes": bench.get("notes", []),
        "bench": bench,
    }
