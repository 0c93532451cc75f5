"""Benchmarks of the bundled models: in-process llama.cpp and llama-cpp-python's server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import start_llama_server
from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.bench import BenchConfig, BenchResult, run_bench
from llmpick.bench.prompts import synthetic_prompt, token_counter_for
from llmpick.config import default_cache_dir
from llmpick.context import Context
from llmpick.errors import UsageError

pytestmark = pytest.mark.slow

MAX_TOKENS = 8


def smollm2_gguf() -> Path:
    return BUNDLED_MODELS["smollm2-135m-instruct"].locate(default_cache_dir())


def check_plausible(result: BenchResult, requests: int, exact_n: bool) -> None:
    """Every metric is present, positive and within loose physical bounds."""
    assert result.results
    for point in result.results:
        m = point.metrics
        assert m.errors == 0, m.error_messages
        assert m.completed == requests
        for summary in (
            m.time_to_first_token_s,
            m.time_per_output_token_s,
            m.inter_token_latency_s,
            m.e2e_latency_s,
        ):
            assert summary.p50 is not None and summary.p99 is not None
            assert summary.mean is not None
            assert 0 < summary.p50 <= summary.p90 <= summary.p99 < 120
        assert m.time_to_first_token_s.mean < m.e2e_latency_s.mean  # type: ignore[operator]
        if exact_n:
            assert m.output_tokens == requests * MAX_TOKENS
            assert m.inter_token_latency_s.count == requests * (MAX_TOKENS - 1)
        for rate in (m.output_tokens_per_second, m.requests_per_second, m.goodput):
            assert rate is not None and rate > 0
        assert m.prefill_tokens_per_second.p50 is not None
        assert point.token_mismatches == 0
    document = result.to_json()
    assert set(document["estimate"] or {}) <= {
        "decode_tokens_per_second",
        "time_to_first_token_s",
        "total_bytes",
        "basis",
    }


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_bundled_model_in_process(name: str) -> None:
    context = Context()
    spec = context.resolve(name)
    spec = spec.model_copy(update={"options": {"n_ctx": 512, "n_threads": 2}})
    config = BenchConfig(
        concurrency=(1, 2), prompt_tokens=24, max_tokens=MAX_TOKENS, requests=2, warmup=1
    )
    result = run_bench(context, spec, config)
    check_plausible(result, requests=2, exact_n=True)
    assert [p.point.concurrency for p in result.results] == [1, 2]
    assert result.device.startswith("cpu:")
    # the model's weights alone are > 50 MB; a 270M model stays far below 2 GiB
    assert result.peak_memory_bytes is not None
    assert 50e6 < result.peak_memory_bytes < 2 * 2**30
    # bench opens the model as serve does (automatic slots), so 2 in flight are not queued
    assert not any("at a time" in note for note in result.notes), result.notes
    # the backend's prompt count includes the chat template around the 24 tokens
    prompts = {t.prompt_tokens for p in result.results for t in p.timings}
    assert all(n is not None and n > 24 for n in prompts)


def test_prompt_longer_than_context() -> None:
    context = Context()
    spec = context.resolve("smollm2-135m-instruct")
    spec = spec.model_copy(update={"options": {"n_ctx": 64, "n_threads": 1}})
    with pytest.raises(UsageError, match="do not fit the context of 64"):
        run_bench(context, spec, BenchConfig(prompt_tokens=100, max_tokens=8))


def test_synthetic_prompt_is_exact_for_the_model_tokenizer() -> None:
    context = Context()
    spec = context.resolve("smollm2-135m-instruct")
    backend = context.open_backend(spec.model_copy(update={"options": {"n_ctx": 256}}))
    counter = token_counter_for(backend)
    assert counter.exact
    for n in (1, 7, 64, 200):
        text = synthetic_prompt(counter, n, seed=n)
        assert len(backend.tokenize(text)) == n  # type: ignore[attr-defined]
    assert synthetic_prompt(counter, 64, seed=1) != synthetic_prompt(counter, 64, seed=2)


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """A llama.cpp server on loopback without an API key (conftest's has one)."""
    process, base_url = start_llama_server(smollm2_gguf())
    try:
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_openai_backend_against_llama_cpp_server(llama_server: str) -> None:
    config = BenchConfig(
        concurrency=(1, 2),
        prompt_tokens=24,
        max_tokens=MAX_TOKENS,
        requests=2,
        warmup=1,
        tokenizer=smollm2_gguf(),
    )
    result = run_bench(Context(), f"openai:smollm2@{llama_server}", config)
    # llama-cpp-python's server ignores ignore_eos, so N may be below max_tokens
    check_plausible(result, requests=2, exact_n=False)
    assert [p.point.concurrency for p in result.results] == [1, 2]
    assert result.token_counter.startswith("gguf:")
    assert result.peak_memory_bytes is None
    assert result.device == f"server at {llama_server}"
    assert result.server_metrics is None  # this server has no /metrics page
