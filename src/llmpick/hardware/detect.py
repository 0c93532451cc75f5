"""Detect this machine: CPU, RAM, memory bandwidth, and NVIDIA GPUs when present.

- CPU model and cores come from ``/proc/cpuinfo`` (Linux), ``sysctl`` (macOS)
  or :mod:`platform`; RAM from :mod:`psutil`.
- Memory bandwidth and FLOPS of a CPU have no spec sheet we can look up, so
  they are *measured*: a 64 MiB NumPy copy (bytes read + bytes written over the
  best of 5 runs) and a 512x512 float32 matrix product (best of 5). Both take
  well under a second and are marked ``measured`` on the Device. They measure
  what NumPy gets from this process (often one core for the copy), which is a
  floor for what llama.cpp's threads get; the speed estimate's efficiency factor
  for CPUs accounts for that.
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

from llmpick.hardware.devices import GIB, Device, HostInfo, _index, _norm

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
        usable = os.cpu_count()
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


def _measure_tflops() -> float:
    import numpy as np

    n = 512
    a = np.ones((n, n), dtype=np.float32)
    b = np.ones((n, n), dtype=np.float32)
    a @ b  # warm up BLAS threads
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


@functools.cache
def detect_cpu() -> Device:
    """This machine's CPU and RAM as a Device, with measured bandwidth and FLOPS."""
    host = detect_host()
    if sys.platform == "darwin" and platform.machine() == "arm64":
        apple = _match_apple(host)
        if apple is not None:
            return apple
    bandwidth = _measure_bandwidth_gb_s()
    tflops = _measure_tflops()
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
        flops_basis="measured: best of 5 NumPy float32 512x512 matrix products "
        "(llama.cpp on CPU computes in float32 after dequantizing)",
        note="usable memory: 90% of RAM, leaving room for the OS",
        measured=("memory_bandwidth_gb_s", "bf16_tflops"),
        host=host,
    )


def _match_apple(host: HostInfo) -> Device | None:
    match = re.search(r"Apple (M\d)(?: (Pro|Max|Ultra))?", host.cpu_model)
    if not match:
        return None
    key = _norm(f"{match.group(1)}{match.group(2) or ''}")
    base = _index().get(key)
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
    table = _index()
    key = _norm(name)
    best = None
    # The longest table key contained in the NVML name wins ("h100pcie" over "h100").
    for candidate, device in table.items():
        if len(candidate) >= 3 and candidate in key and device.kind == "gpu":
            if best is None or len(candidate) > len(best[0]):
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
    """The device a local model would run on: the first GPU if any, else the CPU."""
    gpus = detect_gpus()
    if gpus:
        return gpus[0]
    return detect_cpu()
