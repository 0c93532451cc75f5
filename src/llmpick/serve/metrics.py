"""Prometheus metrics of the gateway (``GET /metrics``), on a registry of its own.

Names (all prefixed ``llmpick_``), labels never carry request text:

- ``requests_total{model, route, status}`` — finished requests
- ``time_to_first_token_seconds{model}``, ``time_per_output_token_seconds{model}``,
  ``request_duration_seconds{model, route}`` — latency histograms (TTFT, TPOT, end to end)
- ``input_tokens_total{model}``, ``output_tokens_total{model}``
- ``in_flight_requests{model}``, ``queue_depth{model}`` — gauges, read from the pool
- ``upstream_errors_total{model, type}`` — failed attempts at a model
- ``fallbacks_total{route, from_model, to_model}`` — a later model answered
- ``refused_requests_total{status, code}`` — answered 4xx/5xx before (or instead of)
  generating: bad key, over a limit, body too large, foreign Host…
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llmpick.backends.pool import ModelPool

__all__ = ["GatewayMetrics"]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_PER_TOKEN = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)


class GatewayMetrics:
    """The gateway's counters and histograms; gauges are read from the pool on scrape."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "llmpick_requests", "Finished requests", ["model", "route", "status"], registry=r
        )
        self.ttft = Histogram(
            "llmpick_time_to_first_token_seconds",
            "Time to first token",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tpot = Histogram(
            "llmpick_time_per_output_token_seconds",
            "Time per output token after the first",
            ["model"],
            buckets=_PER_TOKEN,
            registry=r,
        )
        self.duration = Histogram(
            "llmpick_request_duration_seconds",
            "End-to-end request time",
            ["model", "route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.input_tokens = Counter("llmpick_input_tokens", "Prompt tokens", ["model"], registry=r)
        self.output_tokens = Counter(
            "llmpick_output_tokens", "Output tokens", ["model"], registry=r
        )
        self.in_flight = Gauge(
            "llmpick_in_flight_requests", "Requests being generated", ["model"], registry=r
        )
        self.queue_depth = Gauge(
            "llmpick_queue_depth", "Requests waiting for a slot", ["model"], registry=r
        )
        self.upstream_errors = Counter(
            "llmpick_upstream_errors", "Failed attempts at a model", ["model", "type"], registry=r
        )
        self.refused = Counter(
            "llmpick_refused_requests",
            "Requests refused before or instead of generating",
            ["status", "code"],
            registry=r,
        )
        self.fallbacks = Counter(
            "llmpick_fallbacks",
            "Requests answered by a later model of their route",
            ["route", "from_model", "to_model"],
            registry=r,
        )

    def observe(
        self,
        *,
        model: str,
        route: str,
        status: int,
        total_s: float,
        ttft_s: float | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Record one finished request."""
        self.requests.labels(model, route, str(status)).inc()
        self.duration.labels(model, route).observe(total_s)
        if ttft_s is not None:
            self.ttft.labels(model).observe(ttft_s)
            if completion_tokens > 1:
                self.tpot.labels(model).observe((total_s - ttft_s) / (completion_tokens - 1))
        self.input_tokens.labels(model).inc(prompt_tokens)
        self.output_tokens.labels(model).inc(completion_tokens)

    def render(self) -> bytes:
        """The exposition text, with the pool's gauges read now."""
        for model in self.pool.models():
            self.in_flight.labels(model.name).set(model.in_flight)
            self.queue_depth.labels(model.name).set(model.queued)
        return generate_latest(self.registry)
