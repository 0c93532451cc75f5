"""Per-machine calibration of fit's speed estimates from measurements.

The roofline in :mod:`llmpick.fit.speed` uses assumed efficiencies. On the
machine where llmpick runs, ``llmpick bench --calibrate`` measures a model and
stores, per runtime, the ratios

    decode_factor = measured decode tokens/s / estimated decode tokens/s
    prefill_factor = measured time to first token / estimated time to first token

in ``<cache dir>/calibration.json``, keyed by this host. ``fit_model`` (and so
``recommend``, ``cost`` and ``choose``) applies them when it estimates for this
machine (no ``device`` given) and says so in the basis; estimates for other
devices are never touched. The measured decode rate is 1 / TPOT (p50), the
steady decode rate the roofline models.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from pathlib import Path

from pydantic import BaseModel, ValidationError

__all__ = ["Calibration", "host_key", "load_calibration", "save_calibration"]


class Calibration(BaseModel):
    """Measured/estimated speed ratios for one runtime on one host."""

    host: str
    runtime: str
    decode_factor: float | None = None
    prefill_factor: float | None = None
    model: str
    measured_at: str
    note: str = ""

    def describe(self) -> str:
        """One line for an estimate's basis."""
        parts = []
        if self.decode_factor is not None:
            parts.append(f"decode x {self.decode_factor:.3g}")
        if self.prefill_factor is not None:
            parts.append(f"TTFT x {self.prefill_factor:.3g}")
        return (
            f"calibrated on this machine ({', '.join(parts)}) from llmpick bench of "
            f"{self.model} on {self.measured_at}"
        )


def host_key() -> str:
    """Identify this machine by host name, processor and core count."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.node()}|{cpu}|{os.cpu_count()}"


def _path(cache_dir: Path | None) -> Path:
    if cache_dir is None:
        from llmpick.config import default_cache_dir

        cache_dir = default_cache_dir()
    return cache_dir / "calibration.json"


def _read(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_calibration(runtime: str, cache_dir: Path | None = None) -> Calibration | None:
    """The stored calibration of ``runtime`` for this host, if any."""
    entry = _read(_path(cache_dir)).get(f"{host_key()}|{runtime}")
    if not isinstance(entry, dict):
        return None
    try:
        return Calibration.model_validate(entry)
    except ValidationError:
        return None


def save_calibration(calibration: Calibration, cache_dir: Path | None = None) -> Path:
    """Store ``calibration`` (replacing this host's entry for its runtime)."""
    path = _path(cache_dir)
    data = _read(path)
    data[f"{calibration.host}|{calibration.runtime}"] = calibration.model_dump()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
    return path
