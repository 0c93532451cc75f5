"""``llmpick quant`` results in the SQLite store (tables from migration ``_m008_quant``).

:func:`save_quant` commits one sweep (the whole report as JSON, plus one row per
variant for queries); :func:`measured_quant_loss` answers "what did this
quantization lose on this model, measured?" for ``fit``, ``recommend`` and
``choose``: the latest sweep of the model that measured the quantization. The
reading side lives in :mod:`llmpick.fit.measured_loss` (re-exported here), so
``recommend`` reads measured losses without importing the sweep and evaluation.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from llmpick.fit.measured_loss import (
    MeasuredQuantLoss,
    lookup_measured_loss,
    loss_lookup,
    measured_quant_loss,
)
from llmpick.quant.sweep import QuantReport
from llmpick.store import Store

__all__ = [
    "MeasuredQuantLoss",
    "latest_quant_report",
    "lookup_measured_loss",
    "loss_lookup",
    "measured_quant_loss",
    "save_quant",
]


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
