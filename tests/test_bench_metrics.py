"""The metric functions on synthetic timestamp traces with hand-computed answers."""

from __future__ import annotations

import pytest

from llmpick.bench.metrics import (
    RequestTiming,
    Slo,
    aggregate,
    e2e_latency_s,
    inter_token_latencies_s,
    meets_slo,
    output_tokens,
    prefill_tokens_per_second,
    request_output_tokens_per_second,
    summarize,
    time_per_output_token_s,
    time_to_first_token_s,
)

approx = pytest.approx

# sent at 10.0; chunks of 1, 1, 2, 1 tokens; usage says 5; stream closed at 11.2
MULTI = RequestTiming(
    start_s=10.0,
    end_s=11.2,
    chunk_times_s=(10.5, 10.6, 10.8, 11.1),
    chunk_tokens=(1, 1, 2, 1),
    completion_tokens=5,
    prompt_tokens=100,
)
# the server answered with no output at all
EMPTY = RequestTiming(start_s=0.2, end_s=0.6, completion_tokens=0, prompt_tokens=50)
ONE = RequestTiming(
    start_s=0.0, end_s=0.35, chunk_times_s=(0.3,), chunk_tokens=(1,), completion_tokens=1
)
FAILED = RequestTiming(start_s=0.5, end_s=2.0, error="BackendError: 500")


def test_multi_token_chunks() -> None:
    assert output_tokens(MULTI) == 5
    assert time_to_first_token_s(MULTI) == approx(0.5)
    assert e2e_latency_s(MULTI) == approx(1.2)
    # (E2E - TTFT) / (N - 1) = 0.7 / 4
    assert time_per_output_token_s(MULTI) == approx(0.175)
    # gaps 0.1 (1 token), 0.2 (2 tokens -> 0.1 each), 0.3 (1 token)
    assert inter_token_latencies_s(MULTI) == approx([0.1, 0.1, 0.1, 0.3])
    assert request_output_tokens_per_second(MULTI) == approx(5 / 1.2)
    assert prefill_tokens_per_second(MULTI) == approx(200.0)


def test_zero_token_reply() -> None:
    assert output_tokens(EMPTY) == 0
    assert time_to_first_token_s(EMPTY) is None
    assert time_per_output_token_s(EMPTY) is None
    assert inter_token_latencies_s(EMPTY) == []
    assert e2e_latency_s(EMPTY) == approx(0.4)
    assert request_output_tokens_per_second(EMPTY) == 0.0
    assert prefill_tokens_per_second(EMPTY) is None


def test_one_token_reply_has_no_tpot() -> None:
    assert time_to_first_token_s(ONE) == approx(0.3)
    assert time_per_output_token_s(ONE) is None
    assert inter_token_latencies_s(ONE) == []


def test_first_chunk_tokens_belong_to_ttft() -> None:
    timing = RequestTiming(start_s=0.0, end_s=0.6, chunk_times_s=(0.4, 0.6), chunk_tokens=(3, 2))
    assert output_tokens(timing) == 5  # no usage: sum of chunk counts
    assert time_to_first_token_s(timing) == approx(0.4)
    assert inter_token_latencies_s(timing) == approx([0.1, 0.1])
    assert time_per_output_token_s(timing) == approx(0.2 / 4)


def test_uncounted_text_chunk_passes_its_gap_on() -> None:
    timing = RequestTiming(
        start_s=0.0, end_s=0.5, chunk_times_s=(0.2, 0.3, 0.5), chunk_tokens=(1, 0, 2)
    )
    assert inter_token_latencies_s(timing) == approx([0.15, 0.15])


def test_summarize_percentiles_interpolate() -> None:
    summary = summarize([5.0, 1.0, 3.0, None, 2.0, 4.0])
    assert (summary.p50, summary.p90, summary.p99, summary.mean) == approx((3.0, 4.6, 4.96, 3.0))
    assert summary.count == 5
    assert summarize([]).as_dict() == {
        "p50": None,
        "p90": None,
        "p99": None,
        "mean": None,
        "mean_ci95": None,
    }


def test_slo() -> None:
    assert meets_slo(MULTI, Slo(time_to_first_token_s=0.5, time_per_output_token_s=0.2))
    assert not meets_slo(MULTI, Slo(time_per_output_token_s=0.17))
    assert not meets_slo(MULTI, Slo(e2e_latency_s=1.0))
    assert not meets_slo(EMPTY, Slo(time_to_first_token_s=10.0))
    assert meets_slo(EMPTY, Slo(e2e_latency_s=1.0))
    assert not meets_slo(EMPTY, Slo(time_per_output_token_s=1.0))
    assert meets_slo(ONE, Slo(time_per_output_token_s=0.001))
    assert not meets_slo(FAILED, Slo())


def test_aggregate_excludes_failures_from_latency_and_goodput() -> None:
    # window: first send 0.2 (EMPTY), last end 2.0 (FAILED)... shifted MULTI into it
    multi = RequestTiming(
        start_s=0.0,
        end_s=1.2,
        chunk_times_s=(0.5, 0.6, 0.8, 1.1),
        chunk_tokens=(1, 1, 2, 1),
        completion_tokens=5,
        prompt_tokens=100,
    )
    m = aggregate([multi, EMPTY, FAILED], Slo(time_to_first_token_s=0.6))
    assert m.window_s == approx(2.0)
    assert (m.completed, m.errors, m.output_tokens) == (2, 1, 5)
    assert m.output_tokens_per_second == approx(2.5)
    assert m.requests_per_second == approx(1.0)
    assert m.goodput == approx(0.5)  # only multi meets TTFT <= 0.6
    assert m.time_to_first_token_s.p50 == approx(0.5)  # EMPTY has none, FAILED excluded
    assert m.time_to_first_token_s.count == 1
    e2e = m.e2e_latency_s
    assert (e2e.p50, e2e.p90, e2e.p99, e2e.mean) == approx((0.8, 1.12, 1.192, 0.8))
    assert m.inter_token_latency_s.count == 4
    assert m.inter_token_latency_s.mean == approx(0.15)
    assert m.error_messages == ["BackendError: 500"]


def test_aggregate_without_slo_goodput_is_request_rate() -> None:
    m = aggregate([ONE])
    assert m.goodput == m.requests_per_second == approx(1 / 0.35)


def test_aggregate_of_nothing() -> None:
    m = aggregate([])
    assert m.requests_per_second is None
    assert m.time_to_first_token_s.p50 is None


def test_public_api_is_locked() -> None:
    import llmpick.bench

    assert sorted(llmpick.bench.__all__) == [
        "BenchConfig", "BenchInterrupted", "BenchResult", "Estimate", "LoadMetrics",
        "LoadPoint", "LoadResult", "MemoryReport", "RequestTiming", "Slo", "Summary",
        "aggregate", "config_summary", "list_bench_runs", "run_bench", "save_bench",
    ]  # fmt: skip


def test_mean_interval_over_repeated_requests() -> None:
    assert summarize([0.5]).mean_ci95 is None
    assert summarize([2.0, 2.0, 2.0]).mean_ci95 == approx((2.0, 2.0))
    low, high = summarize([1.0, 2.0, 3.0, 4.0]).mean_ci95  # type: ignore[misc]
    assert 1.0 <= low < 2.5 < high <= 4.0
    assert summarize([1.0, 2.0, 3.0, 4.0]).mean_ci95 == summarize([1.0, 2.0, 3.0, 4.0]).mean_ci95
