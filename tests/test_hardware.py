"""Device table, name resolution and local detection."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmpick.errors import HardwareError
from llmpick.hardware import detect_cpu, detect_host, detect_local, get_device, list_devices

GIB = 1024**3


def test_every_device_is_sourced_and_complete() -> None:
    devices = list_devices()
    assert len(devices) >= 25
    for d in devices:
        assert d.source and d.source.startswith("https://"), d.id
        assert d.memory_bytes > 0 and d.memory_bandwidth_gb_s and d.bf16_tflops, d.id
    ids = {d.id for d in devices}
    for wanted in (
        "rtx-3060-12gb", "rtx-3090", "rtx-4060-ti-16gb", "rtx-4070", "rtx-4080", "rtx-4090",
        "rtx-5090", "a10g", "l4", "l40s", "rtx-a6000", "a100-40gb", "a100-80gb", "h100-sxm",
        "h100-pcie", "h200", "mi300x", "m1-max-64gb", "m2-ultra-192gb", "m4-max-128gb",
    ):  # fmt: skip
        assert wanted in ids


@pytest.mark.parametrize(
    "name", ["4090", "rtx4090", "RTX 4090", "geforce-rtx-4090", "NVIDIA RTX4090"]
)
def test_aliases(name: str) -> None:
    d = get_device(name)
    assert d.id == "rtx-4090"
    assert d.memory_bytes == 24 * GIB
    assert d.memory_bandwidth_gb_s == 1008


def test_spec_figures() -> None:
    h100 = get_device("h100")
    assert (h100.id, h100.memory_bandwidth_gb_s, h100.bf16_tflops) == ("h100-sxm", 3350, 989)
    assert get_device("a100").memory_bytes == 80 * GIB
    assert get_device("mi300x").memory_bytes == 192 * GIB


def test_generic_and_apple_sizes() -> None:
    g = get_device("16gb")
    assert g.memory_bytes == 16 * GIB and g.memory_bandwidth_gb_s is None
    m = get_device("m2-max-32gb")
    assert m.memory_bytes == 32 * GIB and m.memory_bandwidth_gb_s == 400
    assert m.usable_memory_bytes == int(32 * GIB * 0.75)


def test_unknown_device_suggests() -> None:
    with pytest.raises(HardwareError) as info:
        get_device("rtx4099")
    assert "rtx4090" in info.value.one_line()


def test_detect_local_cpu() -> None:
    host = detect_host()
    assert host.ram_bytes > 0 and host.usable_cores and host.cpu_model
    cpu = detect_cpu()
    assert cpu.kind in ("cpu", "apple")
    assert cpu.memory_bytes == host.ram_bytes
    if cpu.kind == "cpu":
        assert cpu.memory_bandwidth_gb_s and cpu.memory_bandwidth_gb_s > 0.1
        assert "memory_bandwidth_gb_s" in cpu.measured
    assert detect_local().memory_bytes > 0
    assert get_device("cpu") == cpu


def test_cli_hardware_json() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from llmpick.cli import main; main()", "hardware", "--list",
         "--quants", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["host"]["ram_bytes"] > 0
    assert any(d["id"] == "rtx-4090" for d in data["devices"])
    assert any(q["name"] == "Q4_K_M" for q in data["quantizations"])
