"""Detect this machine: CPU, RAM, memory bandwidth, and NVIDIA GPUs when present.

- CPU model and cores come from ``/proc/cpuinfo`` (Linux), ``sysctl`` (macOS)
  or :mod:`platform`; RAM from :mod:`psutil`.
- A CPU's memory bandwidth has no spec sheet we can look up, so it is
  *measured*: a 64 MiB NumPy copy (bytes read + written, best of 5 runs, well
  under a second), marked ``measured`` on the Device. One copying thread is a
  floor for what llama.cpp's threads read. CPU FLOPS are *assumed* from the
  core count and clock (a timed matrix product is meaningless on a shared
  machine whose BLAS threads compete for cores).
- NVIDIA GPUs are listed through NVML (``nvidia-ml-py``, the ``gpu`` extra)
  and matched to the device table by name for bandwidth and TFLOPS.
- An Apple silicon Mac is matched to its chip in the table, with the RAM of
  this machine as its memory.

Results are cached per process: detection runs once per command.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
import sys
import time

from llmpick.hardware.devices import GIB, Device, HostInfo, device_index, norm_name

__all__ = ["detect_cpu", "detect_gpus", "detect_host", "detect_local"]


def _cpu_model() -> str:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.lower().startswith(("model name", "hardware", "cpu model")):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.cache
def detect_host() -> HostInfo:
    """CPU model, core counts and RAM of this machine."""
    import psutil

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    memory = psutil.virtual_memory()
    return HostInfo(
        cpu_model=_cpu_model(),
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=psutil.cpu_count(logical=True),
        usable_cores=usable,
        ram_bytes=int(memory.total),
        available_ram_bytes=int(memory.available),
        platform=f"{platform.system()} {platform.machine()}",
    )


def _measure_bandwidth_gb_s() -> float:
    import numpy as np

    src = np.ones(8 * 1024 * 1024, dtype=np.float64)  # 64 MiB, larger than any L3
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9  # read + write


# AVX2/AVX-512 cores retire 2 FMA x 8 float32 lanes x 2 FLOPs = 32 FLOPs per cycle.
_FLOPS_PER_CYCLE = 32
_ASSUMED_GHZ = 2.5


def _assumed_tflops(cores: int) -> tuple[float, str]:
    import psutil

    ghz = _ASSUMED_GHZ
    clock = "an assumed 2.5 GHz"
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        freq = None
    if freq is not None and freq.max:
        ghz = freq.max / 1000
        clock = f"{ghz:.2f} GHz (max clock)"
    basis = (
        f"assumed peak: {cores} usable cores x {clock} x 32 float32 FLOPs/cycle (2 AVX2 FMA "
        "units); llama.cpp on CPU reaches a fraction of it"
    )
    return cores * ghz * _FLOPS_PER_CYCLE / 1000, basis


@functools.cache
def detect_cpu() -> Device:
    """Describe this machine's CPU and RAM as a Device, with measured bandwidth and FLOPS."""
    host = detect_host()
    if sys.platform == "darwin" and platform.machine() == "arm64":
        apple = _match_apple(host)
        if apple is not None:
            return apple
    bandwidth = _measure_bandwidth_gb_s()
    tflops, flops_basis = _assumed_tflops(host.usable_cores or 1)
    return Device(
        id="cpu",
        name=f"{host.cpu_model} ({host.usable_cores} cores usable)",
        vendor="cpu",
        kind="cpu",
        memory_bytes=host.ram_bytes,
        memory_bandwidth_gb_s=round(bandwidth, 2),
        bf16_tflops=round(tflops, 4),
        usable_memory_fraction=0.9,
        bandwidth_basis="measured: best of 5 NumPy copies of 64 MiB (read + write bytes / time)",
        flops_basis=flops_basis,
        note="usable memory: 90% of RAM, leaving room for the OS",
        measured=("memory_bandwidth_gb_s", "memory_bytes"),
        host=host,
    )


def _match_apple(host: HostInfo) -> Device | None:
    match = re.search(r"Apple (M\d)(?: (Pro|Max|Ultra))?", host.cpu_model)
    if not match:
        return None
    key = norm_name(f"{match.group(1)}{match.group(2) or ''}")
    base = device_index().get(key)
    if base is None:
        return None
    return base.model_copy(
        update={
            "id": f"{base.id.rsplit('-', 1)[0]}-local",
            "name": f"{base.name.split(' (')[0]} ({host.ram_bytes / GIB:.0f} GB, this machine)",
            "memory_bytes": host.ram_bytes,
            "measured": ("memory_bytes",),
            "host": host,
        }
    )


@functools.cache
def detect_gpus() -> tuple[Device, ...]:
    """NVIDIA GPUs visible through NVML, matched to the device table (empty if none)."""
    try:
        import pynvml
    except ImportError:
        return ()
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError when no driver is loaded
        return ()
    devices = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            raw_name = pynvml.nvmlDeviceGetName(handle)
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            memory = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            devices.append(_match_gpu(i, name, memory))
    finally:
        pynvml.nvmlShutdown()
    return tuple(devices)


def _match_gpu(index: int, name: str, memory_bytes: int) -> Device:
    table = device_index()
    key = norm_name(name)
    best = None
    # The longest table key contained in the NVML name wins ("h100pcie" over "h100").
    for candidate, device in table.items():
        usable = len(candidate) >= 3 and candidate in key and device.kind == "gpu"
        if usable and (best is None or len(candidate) > len(best[0])):
            best = (candidate, device)
    if best is not None:
        base = best[1]
        return base.model_copy(
            update={
                "id": f"cuda:{index}",
                "name": f"{name} (matched to {base.id})",
                "memory_bytes": memory_bytes,
                "measured": ("memory_bytes",),
                "host": detect_host(),
            }
        )
    return Device(
        id=f"cuda:{index}",
        name=name,
        vendor="nvidia",
        kind="gpu",
        memory_bytes=memory_bytes,
        note="not in the device table: bandwidth and TFLOPS unknown",
        measured=("memory_bytes",),
        host=detect_host(),
    )


def detect_local() -> Device:
    """Return the device a local model would run on: the first GPU if any, else the CPU."""
    gpus = detect_gpus()
    if gpus:
        return gpus[0]
    return detect_cpu()
