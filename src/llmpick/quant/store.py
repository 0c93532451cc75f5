"""``llmpick quant`` results in the SQLite store (tables from migration ``_m008_quant``).

:func:`save_quant` commits one sweep (the whole report as JSON, plus one row per
variant for queries); :func:`measured_quant_loss` answers "what did this
quantization lose on this model, measured?" for ``fit``, ``recommend`` and
``choose``: the latest sweep of the model that measured the quantization.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from llmpick.fit.quant_loss import LossLookup, QuantLoss
from llmpick.quant.sweep import QuantReport
from llmpick.store import Store, open_store

__all__ = [
    "MeasuredQuantLoss",
    "latest_quant_report",
    "lookup_measured_loss",
    "loss_lookup",
    "measured_quant_loss",
    "save_quant",
]


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


def save_quant(store: Store, report: QuantReport) -> str:
    """Commit ``report``; return (and set) its id."""
    report.id = report.id or uuid.uuid4().hex[:12]
    with store.transaction():
        store.db.execute(
            "INSERT INTO quant_runs (id, created_at, model, catalog_id, source_sha256, dataset,"
            " dataset_sha256, eval_run_id, scorer, kld_threshold, choice, result)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                report.id,
                datetime.now(UTC).isoformat(timespec="milliseconds"),
                report.model,
                report.catalog_id,
                report.source_sha256,
                str(report.data.get("source")),
                str(report.data.get("sha256")),
                report.eval_run_id,
                report.scorer,
                report.kld_threshold,
                report.choice,
                report.model_dump_json(),
            ),
        )
        for v in report.variants:
            d = v.divergence
            store.db.execute(
                "INSERT INTO quant_variants (run_id, variant, is_reference, sha256, size_bytes,"
                " bits_per_weight, kld_mean, kld_p99, same_top_token, delta_ppl, quality_mean,"
                " quality_diff, quality_p_value, peak_memory_bytes, decode_tokens_per_second)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    report.id,
                    v.name,
                    int(v.is_reference),
                    v.sha256,
                    v.size_bytes,
                    v.bits_per_weight,
                    d.kld_mean if d else None,
                    d.kld_p99 if d else None,
                    d.same_top_token if d else None,
                    d.delta_ppl if d else None,
                    v.quality_mean,
                    v.quality_diff,
                    v.quality_p_value,
                    v.peak_memory_bytes,
                    v.decode_tokens_per_second,
                ),
            )
    return report.id


def latest_quant_report(store: Store, model: str) -> QuantReport | None:
    """The newest sweep of ``model`` (a catalog id or the model's name), if any."""
    row = store.db.execute(
        "SELECT result FROM quant_runs WHERE lower(catalog_id) = lower(?) OR model = ?"
        " ORDER BY created_at DESC LIMIT 1",
        (model, model),
    ).fetchone()
    return None if row is None else QuantReport.model_validate_json(row[0])


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
    report = QuantReport.model_validate_json(row[0])
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
