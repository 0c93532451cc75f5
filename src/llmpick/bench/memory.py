"""Memory measurement: peak RSS and GPU memory of this process, server-reported figures.

For a local backend the model lives in this process. :class:`MemorySampler`
records the resident set size before the model is loaded (the baseline) and
the peak while it loads and serves (Linux's own high-water mark, reset at the
start; elsewhere a sampling thread); the peak minus the baseline is the
model's footprint. RSS
includes the pages of a memory-mapped GGUF that were read, which is what the
weights really occupy. With NVML (``nvidia-ml-py``) and a GPU, the GPU memory
this process uses is sampled the same way.

An HTTP backend's memory lives in the server: :func:`server_memory_metrics`
reads a Prometheus ``/metrics`` page if the server exposes one (vLLM's KV
cache usage, llama.cpp server's KV cache figures) and otherwise gives None.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import httpx
import psutil

__all__ = ["MemoryReport", "MemorySampler", "server_memory_metrics"]

# metric names whose values describe memory or KV cache use on a server
_SERVER_METRICS = (
    "vllm:gpu_cache_usage_perc",
    "vllm:kv_cache_usage_perc",
    "vllm:cpu_cache_usage_perc",
    "llamacpp:kv_cache_usage_ratio",
    "llamacpp:kv_cache_tokens",
    "process_resident_memory_bytes",
)


@dataclass(frozen=True)
class MemoryReport:
    """Memory seen while a local model loaded and ran (bytes, measured)."""

    baseline_rss_bytes: int
    peak_rss_bytes: int
    gpu_baseline_bytes: int | None = None
    gpu_peak_bytes: int | None = None
    gpu_name: str | None = None

    @property
    def peak_memory_bytes(self) -> int:
        """Model footprint: RSS growth plus GPU growth over the baselines."""
        total = max(0, self.peak_rss_bytes - self.baseline_rss_bytes)
        if self.gpu_peak_bytes is not None and self.gpu_baseline_bytes is not None:
            total += max(0, self.gpu_peak_bytes - self.gpu_baseline_bytes)
        return total


class _Nvml:
    """Read the GPU memory of this process through NVML, if NVML and a GPU are there."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.name: str | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            count = pynvml.nvmlDeviceGetCount()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            if self.handles:
                name = pynvml.nvmlDeviceGetName(self.handles[0])
                self.name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # no library, no driver or no GPU: GPU memory stays None
            self.handles = []

    def used_bytes(self) -> int | None:
        if not self.handles:
            return None
        pid = os.getpid()
        total = 0
        try:
            for handle in self.handles:
                for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == pid and proc.usedGpuMemory:
                        total += int(proc.usedGpuMemory)
        except Exception:
            return None
        return total


def _reset_peak_rss() -> bool:
    """Reset Linux's peak-RSS mark (VmHWM) to the current RSS; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _peak_rss_bytes() is not None
    except OSError:
        return False


def _peak_rss_bytes() -> int | None:
    """VmHWM of this process in bytes, or None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class MemorySampler:
    """Peak RSS (and GPU memory) of this process from ``start()`` to ``stop()``.

    On Linux the kernel keeps the peak itself: ``start()`` resets the
    high-water mark (``/proc/self/clear_refs``) and ``stop()`` reads VmHWM, so
    no thread runs beside the model. Elsewhere, and for GPU memory, a
    background thread samples every ``interval_s`` seconds.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._kernel_peak = False
        self._nvml = _Nvml()
        self.baseline_rss_bytes = 0
        self.peak_rss_bytes = 0
        self.gpu_baseline_bytes: int | None = None
        self.gpu_peak_bytes: int | None = None

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        if self._kernel_peak:
            rss = max(rss, _peak_rss_bytes() or 0)
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
        gpu = self._nvml.used_bytes()
        if gpu is not None:
            self.gpu_peak_bytes = max(self.gpu_peak_bytes or 0, gpu)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        """Take the baselines (call before loading the model) and start measuring."""
        self._kernel_peak = _reset_peak_rss()
        self.baseline_rss_bytes = self._process.memory_info().rss
        self.peak_rss_bytes = self.baseline_rss_bytes
        self.gpu_baseline_bytes = self._nvml.used_bytes()
        self.gpu_peak_bytes = self.gpu_baseline_bytes
        self._started = True
        if not self._kernel_peak or self.gpu_baseline_bytes is not None:
            self._thread = threading.Thread(target=self._loop, name="llmpick-memory", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._started and not self._stop.is_set()

    def stop(self) -> MemoryReport:
        """Stop measuring (if running) and report the baselines and peaks."""
        if self.running:
            self._sample()
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
        return self.report()

    def report(self) -> MemoryReport:
        """Report what was seen so far."""
        return MemoryReport(
            baseline_rss_bytes=self.baseline_rss_bytes,
            peak_rss_bytes=self.peak_rss_bytes,
            gpu_baseline_bytes=self.gpu_baseline_bytes,
            gpu_peak_bytes=self.gpu_peak_bytes,
            gpu_name=self._nvml.name,
        )


def _metrics_url(base_url: str) -> str:
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/metrics"


def parse_prometheus(text: str) -> dict[str, float]:
    """Pick the known memory figures out of a Prometheus text page (summed over labels)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip()
        if name in _SERVER_METRICS:
            try:
                found[name] = found.get(name, 0.0) + float(value)
            except ValueError:
                continue
    return found


def server_memory_metrics(base_url: str, timeout_s: float = 2.0) -> dict[str, float] | None:
    """Read memory figures from the server's ``/metrics`` page; None when it has none."""
    try:
        response = httpx.get(_metrics_url(base_url), timeout=timeout_s)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    found = parse_prometheus(response.text)
    return found or None
