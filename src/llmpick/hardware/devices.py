"""Device profiles: memory, bandwidth and BF16 TFLOPS of common accelerators.

The table lives in ``hardware/data/devices.yaml``, one entry per device with
the vendor page each figure comes from. :func:`llmpick.hardware.resolve.get_device`
resolves a name:

- a table id or alias, loosely (``4090``, ``rtx4090``, ``RTX 4090``,
  ``geforce-rtx-4090`` all name the same card);
- an Apple chip with another memory size, ``m2-max-32gb``;
- a generic ``NNgb`` device (``16gb``): memory only, so speed is not estimated;
- ``cpu`` / ``local``: this machine (see :mod:`llmpick.hardware.detect`).

Unknown names raise :class:`~llmpick.errors.HardwareError` with close matches.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Device", "HostInfo", "device_index", "list_devices", "norm_name"]

GIB = 1024**3
DeviceKind = Literal["gpu", "apple", "cpu", "generic"]

_PREFIXES = ("nvidia", "geforce", "amd", "instinct", "apple", "rtx")


class HostInfo(BaseModel):
    """The CPU side of a detected machine."""

    model_config = ConfigDict(frozen=True)

    cpu_model: str
    physical_cores: int | None
    logical_cores: int | None
    usable_cores: int | None
    ram_bytes: int
    available_ram_bytes: int | None = None
    platform: str


class Device(BaseModel):
    """One accelerator (or a CPU with its RAM) and the figures the estimates use.

    ``memory_bandwidth_gb_s`` is decimal GB/s, ``bf16_tflops`` dense. Either
    may be None (a generic ``16gb`` device), in which case speed is not
    estimated. ``measured`` names the figures measured on this machine rather
    than taken from a spec sheet.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    vendor: str
    kind: DeviceKind
    memory_bytes: int
    memory_bandwidth_gb_s: float | None = None
    bf16_tflops: float | None = None
    usable_memory_fraction: float = Field(default=1.0, gt=0, le=1)
    flops_basis: str | None = None
    bandwidth_basis: str | None = None
    aliases: tuple[str, ...] = ()
    source: str | None = None
    note: str | None = None
    measured: tuple[str, ...] = ()
    host: HostInfo | None = None

    @property
    def usable_memory_bytes(self) -> int:
        """Memory a model may use: ``memory_bytes x usable_memory_fraction``."""
        return int(self.memory_bytes * self.usable_memory_fraction)

    @property
    def memory_bandwidth_bytes_per_s(self) -> float | None:
        """Peak memory bandwidth in bytes per second."""
        bw = self.memory_bandwidth_gb_s
        return bw * 1e9 if bw is not None else None

    @property
    def bf16_flops(self) -> float | None:
        """Dense BF16 FLOP/s."""
        return self.bf16_tflops * 1e12 if self.bf16_tflops is not None else None

    def summary(self) -> dict[str, Any]:
        """Return the fields ``llmpick fit`` prints for the device."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "memory_bytes": self.memory_bytes,
            "usable_memory_bytes": self.usable_memory_bytes,
            "memory_bandwidth_gb_s": self.memory_bandwidth_gb_s,
            "bf16_tflops": self.bf16_tflops,
            "measured": list(self.measured),
            "source": self.source,
        }


def norm_name(name: str) -> str:
    """``name`` as a lookup key: lower case, alphanumeric, vendor prefixes dropped."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix) and len(key) > len(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


@functools.cache
def _load() -> tuple[Device, ...]:
    text = resources.files("llmpick.hardware").joinpath("data/devices.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    devices = []
    for entry in data["devices"]:
        entry = dict(entry)
        memory_gib = entry.pop("memory_gib")
        entry["memory_bytes"] = int(memory_gib * GIB)
        entry["memory_bandwidth_gb_s"] = entry.pop("bandwidth_gb_s", None)
        entry["aliases"] = tuple(str(a) for a in entry.get("aliases", ()))
        devices.append(Device.model_validate(entry))
    return tuple(devices)


@functools.cache
def device_index() -> dict[str, Device]:
    """Every table id, name and alias (as :func:`norm_name` keys) to its device."""
    index: dict[str, Device] = {}
    for device in _load():
        for name in (device.id, device.name, *device.aliases):
            index.setdefault(norm_name(name), device)
    return index


def list_devices() -> list[Device]:
    """Every device in the table, in file order."""
    return list(_load())
