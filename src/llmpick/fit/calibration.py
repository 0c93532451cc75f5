"""Per-machine calibration of fit's speed estimates from measurements.

The roofline in :mod:`llmpick.fit.speed` uses assumed efficiencies. On the
machine where llmpick runs, ``llmpick bench --calibrate`` measures a model and
stores, per runtime, the ratios

    decode_factor = measured decode tokens/s / estimated decode tokens/s
    prefill_factor = measured time to first token / estimated time to first token

in ``<cache dir>/calibration.json``, keyed by this host. ``fit_model`` (and so
``recommend``, ``cost`` and ``choose``) applies them whenever it estimates for a
device detected on this machine (``device`` None, ``cpu`` or ``local``) that the
calibration was measured on, labels the figure ``estimated (calibrated)`` and
says so in the basis; estimates for devices from the table (``rtx4090``) are
never touched. ``choose`` derives a calibration from its own bench of the
bundled models when none is stored and passes it explicitly. The measured
decode rate is 1 / TPOT (p50), the steady decode rate the roofline models.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from pathlib import Path

from pydantic import BaseModel, ValidationError

from llmpick.hardware.devices import Device

__all__ = [
    "Calibration",
    "calibration_for",
    "host_key",
    "load_calibration",
    "save_calibration",
]


class Calibration(BaseModel):
    """Measured/estimated speed ratios for one runtime on one host."""

    host: str
    runtime: str
    decode_factor: float | None = None
    prefill_factor: float | None = None
    model: str
    measured_at: str
    note: str = ""
    #: id of the detected device measured ("cpu", "cuda:0"); None: any device of this host
    device: str | None = None
    #: what measured it, for the basis line
    source: str = "llmpick bench"

    def applies_to(self, device: Device) -> bool:
        """True for a device detected on this machine that this calibration measured."""
        if device.host is None:  # a table device (rtx4090) or a generic size: another machine
            return False
        return self.device is None or self.device == device.id

    def describe(self) -> str:
        """One line for an estimate's basis."""
        parts = []
        if self.decode_factor is not None:
            parts.append(f"decode x {self.decode_factor:.3g}")
        if self.prefill_factor is not None:
            parts.append(f"TTFT x {self.prefill_factor:.3g}")
        return (
            f"calibrated on this machine ({', '.join(parts)}) from {self.source} of "
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


def calibration_for(
    runtime: str, device: Device, given: Calibration | None = None
) -> Calibration | None:
    """The calibration to apply to an estimate of ``runtime`` on ``device``, if any.

    ``given`` (choose's own) wins over the stored one; neither applies to a
    device that is not on this machine.
    """
    if given is not None and given.runtime == runtime and given.applies_to(device):
        return given
    stored = load_calibration(runtime)
    if stored is not None and stored.applies_to(device):
        return stored
    return None
