"""What a benchmark produced: per load point metrics, memory, the estimate, notes.

:meth:`BenchResult.to_json` gives the documented JSON shape::

    {"model", "device", "peak_memory_bytes",
     "estimate": {"decode_tokens_per_second", "time_to_first_token_s", "total_bytes"},
     "results": [{"concurrency" or "rate", "time_to_first_token_s": {p50,p90,p99,mean},
                  "time_per_output_token_s": {...}, "inter_token_latency_s": {...},
                  "e2e_latency_s": {...}, "output_tokens_per_second",
                  "requests_per_second", "goodput", "errors", ...}]}

Measured figures are in ``results`` and ``peak_memory_bytes``; estimated ones
(from ``llmpick.fit``) only under ``estimate``, with their ``basis``;
``ratio`` is measured / estimated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmpick.bench.load import LoadPoint
from llmpick.bench.memory import MemoryReport
from llmpick.bench.metrics import LoadMetrics, RequestTiming, Slo

__all__ = ["BenchResult", "Estimate", "LoadResult"]


@dataclass(frozen=True)
class Estimate:
    """The ``fit`` estimate for the same model, quantization, context and device."""

    decode_tokens_per_second: float | None
    time_to_first_token_s: float | None
    total_bytes: int | None
    basis: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON ``estimate`` object."""
        return {
            "decode_tokens_per_second": self.decode_tokens_per_second,
            "time_to_first_token_s": self.time_to_first_token_s,
            "total_bytes": self.total_bytes,
            "basis": self.basis,
        }


@dataclass
class LoadResult:
    """One load point: its setting, the request timings and the metrics over them."""

    point: LoadPoint
    metrics: LoadMetrics
    timings: list[RequestTiming]
    slo: Slo
    interrupted: bool = False
    #: requests whose backend token count differs from the local tokenizer's
    token_mismatches: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON object of one entry of ``results``."""
        m = self.metrics
        key: dict[str, Any] = (
            {"concurrency": self.point.concurrency}
            if self.point.concurrency is not None
            else {"rate": self.point.rate}
        )
        return {
            **key,
            "time_to_first_token_s": m.time_to_first_token_s.as_dict(),
            "time_per_output_token_s": m.time_per_output_token_s.as_dict(),
            "inter_token_latency_s": m.inter_token_latency_s.as_dict(),
            "e2e_latency_s": m.e2e_latency_s.as_dict(),
            "output_tokens_per_second": m.output_tokens_per_second,
            "requests_per_second": m.requests_per_second,
            "goodput": m.goodput,
            "errors": m.errors,
            "completed": m.completed,
            "output_tokens": m.output_tokens,
            "window_s": m.window_s,
            "request_output_tokens_per_second": m.request_output_tokens_per_second.as_dict(),
            "prefill_tokens_per_second": m.prefill_tokens_per_second.as_dict(),
            "slo": {
                "time_to_first_token_s": self.slo.time_to_first_token_s,
                "time_per_output_token_s": self.slo.time_per_output_token_s,
                "e2e_latency_s": self.slo.e2e_latency_s,
            },
            "error_messages": m.error_messages,
            "token_count_mismatches": self.token_mismatches,
            "interrupted": self.interrupted,
        }


def _ratio(measured: float | None, estimated: float | None) -> float | None:
    if measured is None or not estimated:
        return None
    return measured / estimated


@dataclass
class BenchResult:
    """A benchmark of one model over one or more load points."""

    model: str
    backend: str
    identity: dict[str, Any]
    device: str
    memory: MemoryReport | None
    server_metrics: dict[str, float] | None
    estimate: Estimate | None
    results: list[LoadResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prompt_tokens: int | None = None
    max_tokens: int = 0
    token_counter: str = ""
    interrupted: bool = False

    @property
    def peak_memory_bytes(self) -> int | None:
        """Measured model footprint (local backends); None for HTTP backends."""
        return None if self.memory is None else self.memory.peak_memory_bytes

    def ratio(self) -> dict[str, float | None]:
        """Measured / estimated for memory, decode speed and TTFT at the lowest load."""
        if self.estimate is None:
            return {}
        first = self.results[0].metrics if self.results else None
        tpot = first.time_per_output_token_s.p50 if first else None
        return {
            "peak_memory_bytes": _ratio(
                float(self.peak_memory_bytes) if self.peak_memory_bytes is not None else None,
                float(self.estimate.total_bytes) if self.estimate.total_bytes else None,
            ),
            "decode_tokens_per_second": _ratio(
                1.0 / tpot if tpot else None, self.estimate.decode_tokens_per_second
            ),
            "time_to_first_token_s": _ratio(
                first.time_to_first_token_s.p50 if first else None,
                self.estimate.time_to_first_token_s,
            ),
        }

    def to_json(self) -> dict[str, Any]:
        """Return the documented JSON object for this model."""
        memory: dict[str, Any] | None = None
        if self.memory is not None:
            memory = {
                "baseline_rss_bytes": self.memory.baseline_rss_bytes,
                "peak_rss_bytes": self.memory.peak_rss_bytes,
                "gpu_baseline_bytes": self.memory.gpu_baseline_bytes,
                "gpu_peak_bytes": self.memory.gpu_peak_bytes,
            }
        return {
            "model": self.model,
            "device": self.device,
            "peak_memory_bytes": self.peak_memory_bytes,
            "estimate": None if self.estimate is None else self.estimate.as_dict(),
            "ratio": self.ratio(),
            "results": [r.as_dict() for r in self.results],
            "backend": self.backend,
            "identity": self.identity,
            "memory": memory,
            "server_metrics": self.server_metrics,
            "prompt_tokens": self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "token_counter": self.token_counter,
            "notes": self.notes,
            "interrupted": self.interrupted,
            "measured": "results, peak_memory_bytes and memory are measured; "
            "estimate is estimated by llmpick fit",
        }
