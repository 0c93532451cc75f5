"""Cost arithmetic, the sourced price table, and ``llmpick cost``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmpick.cost import (
    Throughput,
    cost_rows,
    gpu_price_table,
    hourly_price,
    measured_throughput,
    self_hosted_row,
    usd_per_mtok,
)
from llmpick.errors import UsageError
from llmpick.hardware import get_device

LLMPICK = str(Path(sys.executable).with_name("llmpick"))


def test_usd_per_mtok_formula() -> None:
    # $2/h at 100 tokens/s: 360,000 tokens per dollar-hour... 2 / 360000 * 1e6 = 5.5556
    assert usd_per_mtok(2.0, 100.0) == pytest.approx(2.0 / (3600 * 100) * 1e6)
    assert usd_per_mtok(3.6, 1000.0) == pytest.approx(1.0)
    with pytest.raises(UsageError):
        usd_per_mtok(1.0, 0.0)


def test_every_price_has_a_source_and_a_date() -> None:
    table = gpu_price_table()["devices"]
    assert {"cpu", "l4", "a10g", "l40s", "a100-80gb", "h100-sxm", "h200", "rtx-4090"} <= set(table)
    for device, entry in table.items():
        assert entry["offers"], device
        for offer in entry["offers"]:
            assert offer["usd_per_hour"] > 0
            assert str(offer["url"]).startswith("https://"), device
            assert len(str(offer["date"])) == 10, device  # YYYY-MM-DD
            assert offer["provider"]


def test_hourly_price_table_override_and_cpu_per_vcpu() -> None:
    h100 = hourly_price(get_device("h100-sxm"))
    assert h100 is not None and h100.origin == "table" and h100.usd_per_hour == 4.5
    assert "huggingface.co" in (h100.url or "")
    user = hourly_price(get_device("h100-sxm"), 2.25)
    assert user is not None and user.usd_per_hour == 2.25 and user.origin == "user"
    cpu = hourly_price(get_device("cpu"))
    assert cpu is not None and "vCPU" in cpu.note
    with pytest.raises(UsageError):
        hourly_price(get_device("h100-sxm"), -1.0)


def test_measured_throughput_picks_the_concurrency() -> None:
    bench = {
        "device": "cpu: test",
        "max_tokens": 32,
        "results": [
            {"concurrency": 1, "output_tokens_per_second": 20.0, "completed": 3},
            {"concurrency": 4, "output_tokens_per_second": 50.0, "completed": 3},
        ],
    }
    at4 = measured_throughput(bench, 4)
    assert at4 is not None and at4.tokens_per_second == 50.0 and at4.kind == "measured"
    at2 = measured_throughput(bench, 2)
    assert at2 is not None and "closest" in at2.basis
    assert measured_throughput({"results": []}) is None


def test_self_hosted_row_marks_measured_and_missing_price() -> None:
    device = get_device("h100-sxm")
    row = self_hosted_row(
        "m", device, Throughput(tokens_per_second=1000, kind="measured", basis="x"),
        hourly_price(device),
    )  # fmt: skip
    assert row.usd_per_mtok == pytest.approx(4.5 / 3.6)
    assert row.kind == "measured" and "3600" in row.basis()
    mi300x = get_device("mi300x")
    missing = self_hosted_row("m", mi300x, None, hourly_price(mi300x))
    assert missing.usd_per_mtok is None
    assert any("--gpu-hourly-usd" in n for n in missing.notes)


def test_cost_rows_estimate_from_fit() -> None:
    rows = cost_rows(["Qwen/Qwen2.5-7B-Instruct"], device_name="rtx4090", concurrency=4)
    (row,) = rows
    assert row.throughput is not None and row.throughput.kind == "estimated"
    assert row.throughput.concurrency == 4
    assert row.usd_per_mtok is not None and 0 < row.usd_per_mtok < 100
    assert row.hourly is not None and row.hourly.origin == "table"


def test_cost_cli_json_and_bad_input(tmp_path: Path) -> None:
    ok = subprocess.run(
        [LLMPICK, "cost", "Qwen/Qwen2.5-7B-Instruct", "smollm2-135m-instruct",
         "--device", "l4", "--gpu-hourly-usd", "0.8", "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    rows = json.loads(ok.stdout)
    assert [r["model"] for r in rows] == ["Qwen/Qwen2.5-7B-Instruct", "smollm2-135m-instruct"]
    assert all(r["hourly"]["usd_per_hour"] == 0.8 for r in rows)
    assert all(r["throughput"]["kind"] == "estimated" for r in rows)
    table = subprocess.run(
        [LLMPICK, "cost", "Qwen/Qwen2.5-7B-Instruct", "--device", "h100-sxm"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "estimated" in table.stdout and "Hugging Face" in table.stdout
    bad = subprocess.run(
        [LLMPICK, "cost", "no-such/model-xyz"], capture_output=True, text=True, cwd=tmp_path
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "error:" in bad.stderr
    bad_device = subprocess.run(
        [LLMPICK, "cost", "Qwen/Qwen2.5-7B-Instruct", "--device", "no-such-gpu"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert bad_device.returncode == 2 and "error:" in bad_device.stderr
