"""Resolving a device name to a profile: the table first, then this machine.

This sits above :mod:`llmpick.hardware.devices` (the table) and
:mod:`llmpick.hardware.detect` (detection), which both stay free of each other's
names except ``detect`` reading the table.
"""

from __future__ import annotations

import difflib
import re

from llmpick.errors import HardwareError
from llmpick.hardware.detect import detect_cpu, detect_local
from llmpick.hardware.devices import GIB, Device, device_index, list_devices, norm_name

__all__ = ["get_device"]


def _generic(memory_gib: float) -> Device:
    return Device(
        id=f"generic-{memory_gib:g}gb",
        name=f"generic device with {memory_gib:g} GiB",
        vendor="generic",
        kind="generic",
        memory_bytes=int(memory_gib * GIB),
        note="memory only: bandwidth and TFLOPS unknown, so speed is not estimated",
    )


def get_device(name: str) -> Device:
    """Resolve the device called ``name``: a table entry, ``NNgb``, ``cpu`` or ``local``.

    ``cpu`` is this machine's CPU and RAM; ``local`` (or ``auto``) its best
    device (a detected GPU, else the CPU).
    """
    raw = name.strip()
    key = norm_name(raw)
    if key in ("cpu", "host"):
        return detect_cpu()
    if key in ("local", "auto", "this", "detect"):
        return detect_local()
    index = device_index()
    if key in index:
        return index[key]
    generic = re.fullmatch(r"(\d+(?:\.\d+)?)\s*gi?b?", raw.lower().replace(" ", ""))
    if generic and float(generic.group(1)) > 0:
        return _generic(float(generic.group(1)))
    sized = re.fullmatch(r"(.+?)(\d+)gi?b", key)
    if sized and sized.group(1) in index:
        base = index[sized.group(1)]
        if base.kind == "apple":
            gib = int(sized.group(2))
            chip = base.name.split(" (")[0]
            return base.model_copy(
                update={
                    "id": f"{base.id.rsplit('-', 1)[0]}-{gib}gb",
                    "name": f"{chip} ({gib} GB)",
                    "memory_bytes": gib * GIB,
                    "aliases": (),
                }
            )
    known = sorted({d.id for d in list_devices()} | {a for d in list_devices() for a in d.aliases})
    close = difflib.get_close_matches(raw.lower(), known, n=3, cutoff=0.5)
    hint = (
        "did you mean: " + ", ".join(close) + "?"
        if close
        else "run 'llmpick hardware --list' for known devices, or pass a size such as 16gb"
    )
    raise HardwareError(f"unknown device {name!r}", hint)
