"""What a model costs per million output tokens: self-hosted beside API prices.

Self-hosted::

    usd_per_mtok = device usd_per_hour / (3600 x output tokens/s) x 1e6

where output tokens/s is the aggregate rate at the chosen concurrency:
*measured* by ``llmpick bench`` (or ``choose``) on this machine when the store
holds a benchmark of the model, else *estimated* by ``llmpick.fit`` (decode
tokens/s per sequence x concurrency, a roofline estimate). The hourly price is
``--gpu-hourly-usd`` or the first offer for the device in
``hardware/data/gpu_prices.yaml`` (each offer names its provider page and the
date it was read; a CPU is priced per vCPU). The figure assumes the device is
kept busy: idle hours cost the same and produce nothing.

API prices come from the catalog cards' ``prices`` (input and output $/1M
tokens, each with its source and date).
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from llmpick.errors import CatalogError, LlmpickError, UsageError

__all__ = [
    "ApiPrice",
    "CostRow",
    "HourlyPrice",
    "Throughput",
    "cost_rows",
    "estimate_throughput",
    "gpu_price_table",
    "hourly_price",
    "measured_throughput",
    "self_hosted_row",
    "usd_per_mtok",
]


class HourlyPrice(BaseModel):
    """What one device-hour costs, and where the figure comes from."""

    usd_per_hour: float = Field(gt=0)
    provider: str
    url: str | None = None
    date: str | None = None
    note: str = ""
    #: "user" (--gpu-hourly-usd) or "table" (gpu_prices.yaml)
    origin: Literal["user", "table"] = "table"

    def describe(self) -> str:
        """One line: price, provider, date."""
        if self.origin == "user":
            return f"${self.usd_per_hour:g}/h (given with --gpu-hourly-usd)"
        when = f", read {self.date}" if self.date else ""
        note = f"; {self.note}" if self.note else ""
        return f"${self.usd_per_hour:.4g}/h from {self.provider} ({self.url}{when}{note})"


class Throughput(BaseModel):
    """Aggregate output tokens/s at a concurrency, measured or estimated."""

    tokens_per_second: float = Field(gt=0)
    kind: Literal["measured", "estimated"]
    concurrency: int = 1
    basis: str
    #: an estimate scaled by this machine's calibration (``bench --calibrate`` or choose's bench)
    calibrated: bool = False


class ApiPrice(BaseModel):
    """An API provider's list price for the model (from the catalog)."""

    provider: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    source: str
    date: str


class CostRow(BaseModel):
    """One model's cost: self-hosted $/1M output tokens beside API prices."""

    model: str
    catalog_id: str | None = None
    device: str
    hourly: HourlyPrice | None = None
    throughput: Throughput | None = None
    #: self-hosted $ per 1M output tokens; None when price or throughput is unknown
    usd_per_mtok: float | None = None
    #: "measured" when the throughput was measured (the price is still a list price)
    kind: Literal["measured", "estimated"] | None = None
    api_prices: list[ApiPrice] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def basis(self) -> str:
        """How usd_per_mtok was computed, in words."""
        if self.usd_per_mtok is None or self.hourly is None or self.throughput is None:
            return "; ".join(self.notes) or "not computed"
        return (
            f"{self.hourly.describe()} / (3600 x {self.throughput.tokens_per_second:.3g} "
            f"output tokens/s {self.throughput.kind} at concurrency "
            f"{self.throughput.concurrency}) x 1e6"
        )


def usd_per_mtok(usd_per_hour: float, tokens_per_second: float) -> float:
    """Dollars per million output tokens for a device busy at ``tokens_per_second``."""
    if usd_per_hour <= 0 or tokens_per_second <= 0:
        raise UsageError("the hourly price and the throughput must both be positive")
    return usd_per_hour / (3600.0 * tokens_per_second) * 1e6


@cache
def gpu_price_table() -> dict[str, Any]:
    """Return the parsed ``hardware/data/gpu_prices.yaml`` (devices -> offers)."""
    text = (
        resources.files("llmpick.hardware")
        .joinpath("data/gpu_prices.yaml")
        .read_text(encoding="utf-8")
    )
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
        raise CatalogError("gpu_prices.yaml has no 'devices' mapping")
    return data


def _vcpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def hourly_price(device: Any, override_usd: float | None = None) -> HourlyPrice | None:
    """Return the hourly price of ``device`` (a :class:`llmpick.hardware.Device`).

    ``override_usd`` (``--gpu-hourly-usd``) wins; else the device's first offer
    in the price table; None when the table has no offer for it.
    """
    if override_usd is not None:
        if override_usd <= 0:
            raise UsageError(f"--gpu-hourly-usd must be positive, got {override_usd:g}")
        return HourlyPrice(usd_per_hour=override_usd, provider="user", origin="user")
    key = "cpu" if device.kind == "cpu" else device.id
    entry = gpu_price_table()["devices"].get(key)
    if not entry or not entry.get("offers"):
        return None
    offer = entry["offers"][0]
    price = float(offer["usd_per_hour"])
    note = str(offer.get("note", ""))
    if entry.get("per") == "vcpu":
        cores = _vcpus()
        note = f"{cores} vCPU x ${price:g}/vCPU-h; {note}".rstrip("; ")
        price *= cores
    return HourlyPrice(
        usd_per_hour=price,
        provider=str(offer["provider"]),
        url=offer.get("url"),
        date=str(offer.get("date")) if offer.get("date") else None,
        note=note,
    )


def estimate_throughput(
    model: str,
    device: Any,
    concurrency: int = 1,
    quant: str | None = None,
    context: int = 4096,
    calibration: Any = None,
) -> Throughput | None:
    """Estimate aggregate output tokens/s with ``llmpick.fit`` (per sequence x concurrency).

    On a device of this machine the estimate is calibrated (``calibration``, else
    the stored one), as ``fit`` does. None when fit cannot estimate (unknown
    model, or the device has no bandwidth figure).
    """
    from llmpick.fit import fit_model

    try:
        fit = fit_model(
            model,
            quant=quant,
            context=context,
            batch=concurrency,
            device=device,
            calibration=calibration,
        )
    except LlmpickError:
        return None
    if not fit.decode_tokens_per_second:
        return None
    basis = fit.basis.get("decode_tokens_per_second") or fit.basis.get("speed") or ""
    return Throughput(
        tokens_per_second=fit.decode_tokens_per_second * concurrency,
        kind="estimated",
        calibrated=fit.labels.get("decode_tokens_per_second") == "estimated (calibrated)",
        concurrency=concurrency,
        basis=f"llmpick fit at {fit.quant}, {context:,} tokens, batch {concurrency} on "
        f"{fit.device.get('name', device.name)}: {basis}".rstrip(": "),
    )


def measured_throughput(bench: dict[str, Any], concurrency: int = 1) -> Throughput | None:
    """Return the measured throughput in a ``BenchResult.to_json()`` document at ``concurrency``.

    Falls back to the closest concurrency measured (and says so in the basis).
    """
    points = [
        p
        for p in bench.get("results", [])
        if p.get("concurrency") and p.get("output_tokens_per_second")
    ]
    if not points:
        return None
    point = min(points, key=lambda p: (abs(p["concurrency"] - concurrency), p["concurrency"]))
    note = "" if point["concurrency"] == concurrency else f" (closest to {concurrency} measured)"
    return Throughput(
        tokens_per_second=float(point["output_tokens_per_second"]),
        kind="measured",
        concurrency=int(point["concurrency"]),
        basis=f"llmpick bench on {bench.get('device', 'this machine')}: "
        f"{point.get('completed', '?')} requests of {bench.get('max_tokens', '?')} output "
        f"tokens at concurrency {point['concurrency']}{note}",
    )


def _api_prices(card: Any) -> list[ApiPrice]:
    if card is None:
        return []
    return [
        ApiPrice(
            provider=p.provider,
            input_usd_per_mtok=p.input_usd_per_mtok,
            output_usd_per_mtok=p.output_usd_per_mtok,
            source=str(p.source),
            date=str(p.date),
        )
        for p in card.prices
    ]


def self_hosted_row(
    model: str,
    device: Any,
    throughput: Throughput | None,
    hourly: HourlyPrice | None,
    card: Any = None,
) -> CostRow:
    """Build the cost row for one model from a throughput and an hourly price."""
    row = CostRow(
        model=model,
        catalog_id=card.id if card is not None else None,
        device=device.name,
        hourly=hourly,
        throughput=throughput,
        api_prices=_api_prices(card),
    )
    if hourly is None:
        row.notes.append(
            f"no hourly price for {device.name} in the price table; pass --gpu-hourly-usd"
        )
    if throughput is None:
        row.notes.append("no throughput measured or estimated for this model on this device")
    if hourly is not None and throughput is not None:
        row.usd_per_mtok = usd_per_mtok(hourly.usd_per_hour, throughput.tokens_per_second)
        row.kind = throughput.kind
    if card is not None and not card.prices:
        row.notes.append("the catalog lists no API price for this model")
    return row


def _latest_bench(db_path: Path, names: set[str]) -> dict[str, Any] | None:
    if not db_path.exists():
        return None
    from llmpick.store import open_store

    store = open_store(db_path)
    try:
        rows = store.db.execute(
            "SELECT model, result FROM bench_runs WHERE interrupted = 0 ORDER BY created_at DESC"
        ).fetchall()
    except Exception:  # an older store without bench tables
        return None
    finally:
        store.close()
    for row in rows:
        if row["model"] in names:
            found: dict[str, Any] = json.loads(row["result"])
            return found
    return None


def cost_rows(
    models: list[str],
    device_name: str | None = None,
    gpu_hourly_usd: float | None = None,
    concurrency: int = 1,
    tokens_per_second: float | None = None,
    db_path: Path | None = None,
    quant: str | None = None,
) -> list[CostRow]:
    """Cost rows for ``llmpick cost``: each model by catalog id or bundled alias.

    Throughput, in order: ``tokens_per_second`` (given: treated as measured), the
    newest benchmark of the model in ``db_path``, else a ``fit`` estimate.
    """
    from llmpick.backends.bundled import bundled_model
    from llmpick.catalog import load_catalog
    from llmpick.hardware import detect_local, get_device

    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    if not models:
        raise UsageError("name at least one model", "e.g. llmpick cost Qwen/Qwen2.5-7B-Instruct")
    device = get_device(device_name) if device_name else detect_local()
    hourly = hourly_price(device, gpu_hourly_usd)
    catalog = load_catalog()
    rows = []
    for name in models:
        bundled = bundled_model(name)
        card = catalog.get(bundled.catalog_id if bundled else name)
        throughput: Throughput | None = None
        if tokens_per_second is not None:
            if tokens_per_second <= 0:
                raise UsageError("--tokens-per-second must be positive")
            throughput = Throughput(
                tokens_per_second=tokens_per_second,
                kind="measured",
                concurrency=concurrency,
                basis="given with --tokens-per-second",
            )
        elif db_path is not None and device_name is None:
            bench = _latest_bench(db_path, {name, card.id, *(card.aliases or [])})
            if bench is not None:
                throughput = measured_throughput(bench, concurrency)
        if throughput is None:
            throughput = estimate_throughput(
                bundled.name if bundled else card.id, device, concurrency, quant=quant
            )
        rows.append(self_hosted_row(name, device, throughput, hourly, card))
    return rows
