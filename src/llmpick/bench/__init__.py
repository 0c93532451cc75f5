"""Performance measurement: latency, throughput and memory, beside the ``fit`` estimate.

Library entry point for the ``choose`` stage::

    from llmpick.bench import BenchConfig, run_bench
    result = run_bench(context, "smollm2-135m-instruct", BenchConfig(concurrency=(1,)))
    result.to_json()

Metric definitions live in :mod:`llmpick.bench.metrics` (and ``docs/metrics.md``).
"""

from llmpick.bench.load import LoadPoint
from llmpick.bench.memory import MemoryReport
from llmpick.bench.metrics import LoadMetrics, RequestTiming, Slo, Summary, aggregate
from llmpick.bench.results import BenchResult, Estimate, LoadResult
from llmpick.bench.runner import BenchConfig, BenchInterrupted, config_summary, run_bench
from llmpick.bench.store import list_bench_runs, save_bench

__all__ = [
    "BenchConfig",
    "BenchInterrupted",
    "BenchResult",
    "Estimate",
    "LoadMetrics",
    "LoadPoint",
    "LoadResult",
    "MemoryReport",
    "RequestTiming",
    "Slo",
    "Summary",
    "aggregate",
    "config_summary",
    "list_bench_runs",
    "run_bench",
    "save_bench",
]
