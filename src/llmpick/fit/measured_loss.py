"""Measured quantization losses: what ``llmpick quant`` stored, read for fit, recommend, choose.

``llmpick quant`` (:mod:`llmpick.quant.store`) writes one row per sweep and per
variant (migration ``_m008_quant``); this module only reads them. It parses the
stored sweep through :class:`_StoredSweep`, the few fields it needs, so reading a
measured loss does not import the sweep (and with it evaluation and scipy).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmpick.fit.quant_loss import LossLookup, QuantLoss
from llmpick.store import Store, open_store

__all__ = ["MeasuredQuantLoss", "lookup_measured_loss", "loss_lookup", "measured_quant_loss"]


class _StoredVariant(BaseModel):
    model_config = ConfigDict(extra="ignore")

    is_reference: bool = False
    quality_mean: float | None = None


class _StoredSweep(BaseModel):
    """The fields of a stored ``llmpick.quant.sweep.QuantReport`` a measured loss cites."""

    model_config = ConfigDict(extra="ignore")

    id: str
    source: str
    data: dict[str, Any]
    scorer: str | None = None
    eval_run_id: str | None = None
    variants: list[_StoredVariant]


class MeasuredQuantLoss(BaseModel):
    """What one quantization lost on one model, measured by ``llmpick quant``.

    Field for field a ``llmpick.fit.quant_loss.QuantLoss`` with ``basis="measured"``
    (``QuantLoss.model_validate(m.model_dump())`` converts it; extra fields are
    ignored there), plus the signed difference and the mean KLD.
    """

    quant: str
    #: fraction of the reference's mean score lost, in [0, 1] (0 when the variant scored higher)
    quality_loss: float = Field(ge=0, le=1)
    basis: Literal["measured"] = "measured"
    source: str
    data: str
    #: variant minus reference mean score (signed, in the scorer's units)
    quality_diff: float
    kld_mean: float | None = None


def measured_quant_loss(store: Store, model: str, quant: str) -> MeasuredQuantLoss | None:
    """The measured loss of ``quant`` on ``model`` (catalog id or name) from the newest sweep.

    None when no sweep measured that quantization's quality on that model.
    """
    key = quant.strip().upper().replace("-", "_")
    row = store.db.execute(
        "SELECT r.result, v.quality_diff, v.kld_mean FROM quant_variants v"
        " JOIN quant_runs r ON r.id = v.run_id"
        " WHERE (lower(r.catalog_id) = lower(?) OR r.model = ?) AND v.variant = ?"
        " AND v.quality_diff IS NOT NULL ORDER BY r.created_at DESC LIMIT 1",
        (model, model, key),
    ).fetchone()
    if row is None:
        return None
    report = _StoredSweep.model_validate_json(row[0])
    ref = next(v for v in report.variants if v.is_reference)
    diff = float(row[1])
    loss = -diff / ref.quality_mean if ref.quality_mean else -diff
    return MeasuredQuantLoss(
        quant=key,
        quality_loss=min(1.0, max(0.0, loss)),
        quality_diff=diff,
        source=f"llmpick quant run {report.id} (eval run {report.eval_run_id}) against the "
        f"reference built from {Path(report.source).name}",
        data=f"{report.data.get('source')} ({report.data.get('rows')} rows, sha256 "
        f"{str(report.data.get('sha256'))[:12]}), scorer {report.scorer}",
        kld_mean=None if row[2] is None else float(row[2]),
    )


def lookup_measured_loss(db_path: Path | str, model: str, quant: str) -> MeasuredQuantLoss | None:
    """:func:`measured_quant_loss` in the store at ``db_path``; None if there is no store yet."""
    if not Path(db_path).is_file():
        return None
    with open_store(db_path) as store:
        return measured_quant_loss(store, model, quant)


def loss_lookup(db_path: Path | str) -> LossLookup:
    """Measured losses in the store at ``db_path`` as ``recommend``'s ``losses``.

    Each (model, quantization) is read once; no store means no measured loss.
    """

    @functools.cache
    def lookup(model: str, quant: str) -> QuantLoss | None:
        found = lookup_measured_loss(db_path, model, quant)
        return None if found is None else QuantLoss.model_validate(found.model_dump())

    return lookup
