"""Latency and throughput metrics: pure functions from timestamps.

Every metric llmpick prints about speed is computed here, from the times at
which a request was sent and its streamed chunks arrived
(``time.perf_counter()`` seconds) and the number of output tokens in each
chunk. Nothing here measures anything; :mod:`llmpick.bench.load` does that.

Definitions (per request; N = output tokens, from the backend's own usage
report when it gives one, else the sum of the per-chunk token counts):

``time_to_first_token_s`` (TTFT)
    Arrival of the first chunk that carries output, minus the send time.
    Includes queueing, prompt processing (prefill) and the first decode step.
    Undefined for a reply with no output. Same name in vLLM, GuideLLM,
    genai-perf and llmperf.

``time_per_output_token_s`` (TPOT)
    ``(E2E - TTFT) / (N - 1)``: the mean time between output tokens after the
    first. Undefined for N <= 1. vLLM calls this TPOT; GuideLLM and
    genai-perf call the same quantity *inter-token latency* (ITL). Its
    inverse is the decode rate of one request.

``inter_token_latency_s`` (ITL, per token)
    One sample per output token after the first chunk: a chunk holding k
    tokens that arrives g seconds after the previous output chunk gives k
    samples of g / k (servers that batch tokens into one chunk would otherwise
    show one long gap and k - 1 zero gaps). Tokens in the first chunk are
    covered by TTFT, not ITL. Unlike TPOT this keeps the per-token
    distribution, so its p99 shows stalls. llmperf's "inter-token latency" is
    a different quantity: it averages gaps *including* the first token
    (E2E / N), so it is larger than this.

``e2e_latency_s`` (E2E)
    Arrival of the last chunk minus the send time. Same in every tool.

``output_tokens_per_second`` (per request)
    N / E2E, as llmperf's ``request_output_throughput``. (Decode rate alone is
    1 / TPOT.)

``prefill_tokens_per_second``
    Prompt tokens / TTFT: an upper bound on prompt processing time, since TTFT
    also holds queueing and one decode step.

Aggregates over one load point (the *measured window* runs from the send time
of the first measured request to the arrival of the last chunk of the last
one; warm-up requests are not in it):

``output_tokens_per_second`` (aggregate)
    Sum of N over successful requests / window. genai-perf's "output token
    throughput", vLLM's "output token throughput".

``requests_per_second``
    Successful requests / window.

``goodput``
    Requests per second that succeeded *and* met every given SLO (TTFT,
    TPOT, E2E upper bounds in seconds) / window, as in vLLM's
    ``--goodput``. Failed requests never count. A metric that is undefined
    fails its SLO (a reply with no output has no TTFT), except TPOT for a
    one-token reply, which has no decode phase to bound. With no SLO, goodput
    equals ``requests_per_second``.

Distributions are summarised as p50, p90, p99 (linear interpolation between
order statistics, ``numpy.percentile``'s default, as vLLM uses) and the mean,
over successful requests only, with a 95% bootstrap interval of the mean over
the repeated requests (``mean_ci95``; 2,000 resamples, seeded,
:mod:`llmpick.bootstrap`). Failed requests are counted in ``errors``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmpick.bootstrap import percentile_bootstrap

__all__ = [
    "PERCENTILES",
    "LoadMetrics",
    "RequestTiming",
    "Slo",
    "Summary",
    "aggregate",
    "e2e_latency_s",
    "inter_token_latencies_s",
    "meets_slo",
    "output_tokens",
    "prefill_tokens_per_second",
    "request_output_tokens_per_second",
    "summarize",
    "time_per_output_token_s",
    "time_to_first_token_s",
]

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class RequestTiming:
    """What one request left behind: times in perf_counter seconds, token counts.

    ``chunk_times_s`` and ``chunk_tokens`` list only chunks that carried
    output; a chunk may carry several tokens or (text without a count) none.
    ``completion_tokens`` is the backend's own count when it reported one.
    ``error`` is set (and timings may be partial) when the request failed.
    ``text`` is the output, kept to check token counts against a tokenizer.
    """

    start_s: float
    end_s: float
    chunk_times_s: tuple[float, ...] = ()
    chunk_tokens: tuple[int, ...] = ()
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        """Return True when the request finished without an error."""
        return self.error is None


def output_tokens(timing: RequestTiming) -> int:
    """N: the backend's completion count, else the sum of chunk token counts."""
    if timing.completion_tokens is not None:
        return timing.completion_tokens
    return sum(timing.chunk_tokens)


def time_to_first_token_s(timing: RequestTiming) -> float | None:
    """TTFT: first output chunk's arrival minus send time; None without output."""
    if not timing.chunk_times_s or output_tokens(timing) == 0:
        return None
    return timing.chunk_times_s[0] - timing.start_s


def e2e_latency_s(timing: RequestTiming) -> float:
    """End-to-end latency: last chunk's arrival minus send time."""
    return timing.end_s - timing.start_s


def time_per_output_token_s(timing: RequestTiming) -> float | None:
    """TPOT = (E2E - TTFT) / (N - 1); None for N <= 1."""
    n = output_tokens(timing)
    ttft = time_to_first_token_s(timing)
    if n <= 1 or ttft is None:
        return None
    return (e2e_latency_s(timing) - ttft) / (n - 1)


def inter_token_latencies_s(timing: RequestTiming) -> list[float]:
    """Per-token ITL samples: a chunk of k tokens after a gap g gives k samples of g / k.

    The gap runs from the previous chunk that carried tokens, so a chunk of
    text with no token count passes its time on to the next counted chunk.
    The first counted chunk's tokens belong to TTFT and give no sample.
    """
    samples: list[float] = []
    previous: float | None = None
    for arrival, tokens in zip(timing.chunk_times_s, timing.chunk_tokens, strict=True):
        if tokens <= 0:
            continue
        if previous is not None:
            gap = arrival - previous
            samples.extend([gap / tokens] * tokens)
        previous = arrival
    return samples


def request_output_tokens_per_second(timing: RequestTiming) -> float | None:
    """N / E2E for one request; None when E2E is zero."""
    e2e = e2e_latency_s(timing)
    return output_tokens(timing) / e2e if e2e > 0 else None


def prefill_tokens_per_second(timing: RequestTiming) -> float | None:
    """Prompt tokens / TTFT; None without a prompt count or a first token."""
    ttft = time_to_first_token_s(timing)
    if timing.prompt_tokens is None or ttft is None or ttft <= 0:
        return None
    return timing.prompt_tokens / ttft


@dataclass(frozen=True)
class Slo:
    """Service-level objectives: upper bounds in seconds; None means no bound."""

    time_to_first_token_s: float | None = None
    time_per_output_token_s: float | None = None
    e2e_latency_s: float | None = None

    def is_empty(self) -> bool:
        """Return True when no bound is set."""
        return (
            self.time_to_first_token_s is None
            and self.time_per_output_token_s is None
            and self.e2e_latency_s is None
        )


def meets_slo(timing: RequestTiming, slo: Slo) -> bool:
    """Return True when the request succeeded and every bound in ``slo`` holds."""
    if not timing.ok:
        return False
    if slo.time_to_first_token_s is not None:
        ttft = time_to_first_token_s(timing)
        if ttft is None or ttft > slo.time_to_first_token_s:
            return False
    if slo.time_per_output_token_s is not None:
        tpot = time_per_output_token_s(timing)
        if tpot is None:
            # a one-token reply has no decode phase; no output at all fails
            if output_tokens(timing) != 1:
                return False
        elif tpot > slo.time_per_output_token_s:
            return False
    return slo.e2e_latency_s is None or e2e_latency_s(timing) <= slo.e2e_latency_s


@dataclass(frozen=True)
class Summary:
    """p50, p90, p99 and mean of a sample; all None for an empty sample.

    ``mean_ci95`` is a 95% bootstrap (percentile) interval of the mean over the
    repeated requests, None below two values.
    """

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    mean: float | None = None
    count: int = 0
    mean_ci95: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the statistics, as they appear in the JSON output."""
        return {
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "mean": self.mean,
            "mean_ci95": list(self.mean_ci95) if self.mean_ci95 else None,
        }


def summarize(values: Iterable[float | None]) -> Summary:
    """Percentiles (linear interpolation) and mean of the defined values."""
    sample = [v for v in values if v is not None and math.isfinite(v)]
    if not sample:
        return Summary()
    array = np.asarray(sample, dtype=float)
    p50, p90, p99 = (float(x) for x in np.percentile(array, PERCENTILES))
    ci: tuple[float, float] | None = None
    if len(sample) >= 2:
        # Seeded so the same requests always give the same interval.
        low, high, _ = percentile_bootstrap(array, n_boot=2000, seed=0)
        ci = (low, high)
    return Summary(
        p50=p50, p90=p90, p99=p99, mean=float(array.mean()), count=len(sample), mean_ci95=ci
    )


@dataclass(frozen=True)
class LoadMetrics:
    """Everything computed for one load point."""

    time_to_first_token_s: Summary
    time_per_output_token_s: Summary
    inter_token_latency_s: Summary
    e2e_latency_s: Summary
    request_output_tokens_per_second: Summary
    prefill_tokens_per_second: Summary
    output_tokens_per_second: float | None
    requests_per_second: float | None
    goodput: float | None
    window_s: float
    completed: int
    errors: int
    output_tokens: int
    error_messages: list[str] = field(default_factory=list)


def aggregate(timings: Sequence[RequestTiming], slo: Slo | None = None) -> LoadMetrics:
    """Summaries and throughputs over the measured requests of one load point.

    Latency distributions use successful requests only; the window spans every
    measured request, failed ones included, since they occupied the run.
    """
    slo = slo or Slo()
    ok = [t for t in timings if t.ok]
    failed = [t for t in timings if not t.ok]
    window = max(t.end_s for t in timings) - min(t.start_s for t in timings) if timings else 0.0
    total_tokens = sum(output_tokens(t) for t in ok)
    good = sum(1 for t in ok if meets_slo(t, slo))
    itl: list[float] = []
    for t in ok:
        itl.extend(inter_token_latencies_s(t))

    def rate(count: int) -> float | None:
        return count / window if window > 0 else None

    return LoadMetrics(
        time_to_first_token_s=summarize(time_to_first_token_s(t) for t in ok),
        time_per_output_token_s=summarize(time_per_output_token_s(t) for t in ok),
        inter_token_latency_s=summarize(itl),
        e2e_latency_s=summarize(e2e_latency_s(t) for t in ok),
        request_output_tokens_per_second=summarize(request_output_tokens_per_second(t) for t in ok),
        prefill_tokens_per_second=summarize(prefill_tokens_per_second(t) for t in ok),
        output_tokens_per_second=rate(total_tokens),
        requests_per_second=rate(len(ok)),
        goodput=rate(good),
        window_s=window,
        completed=len(ok),
        errors=len(failed),
        output_tokens=total_tokens,
        error_messages=sorted({t.error for t in failed if t.error}),
    )
