"""Exports of a sheet's current state: a self-contained HTML report, Markdown and JSON.

All three are built from one :class:`SheetReport` — the sheet, its run's
summary (means with 95% intervals, paired comparisons, categories), the human
ranking from blind votes, and the side-by-side table that the CSV export and
``llmpick results --format csv`` print. The HTML file embeds its styles and
forbids every fetch in its own Content-Security-Policy, so it opens offline and
the untrusted texts it shows (escaped) can load nothing.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse
from jinja2 import Environment
from pydantic import BaseModel, Field

from llmpick.evaluate.results import (
    EvalResult,
    cell_rows,
    rows_to_csv,
    rows_to_markdown,
    side_by_side,
)
from llmpick.store import Store, open_store
from llmpick.ui.models import SCHEMA_VERSION, HumanRanking, Progress, SheetInfo
from llmpick.ui.sheets import WorkbenchStore
from llmpick.ui.votes import human_ranking
from llmpick.ui.workbench import Workbench

__all__ = [
    "SheetReport",
    "add_export_routes",
    "render_report_html",
    "render_report_json",
    "render_report_markdown",
    "sheet_report",
]


class SheetReport(BaseModel):
    """What a sheet's exports hold (``export.json`` is this, as JSON)."""

    schema_version: int = SCHEMA_VERSION
    generated_at: str
    sheet: SheetInfo
    progress: Progress
    summary: EvalResult | None
    human_ranking: HumanRanking
    #: one row per prompt, a column (and a ``MODEL score`` column) per model
    table: list[dict[str, Any]] = Field(default_factory=list)


def sheet_report(
    store: Store,
    sheet: SheetInfo,
    progress: Progress,
    summary: EvalResult | None,
    ranking: HumanRanking,
) -> SheetReport:
    """The report of ``sheet`` as it stands (a run still filling is reported as far as it got)."""
    return SheetReport(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        sheet=sheet,
        progress=progress,
        summary=summary,
        human_ranking=ranking,
        table=side_by_side(store, sheet.run_id) if sheet.run_id else [],
    )


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{digits}f}"


def _interval(ci: Any, digits: int = 3) -> str:
    return "—" if not ci else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _summary_rows(report: SheetReport) -> list[dict[str, str]]:
    if report.summary is None:
        return []
    return [
        {
            "model": name,
            "mean": _num(m.mean),
            "95% interval": _interval(m.ci95),
            "n": str(m.n),
            "errors": str(m.errors),
            "latency p50 (s)": _num(m.latency_s.p50, 2),
            "cost (USD)": _num(m.cost_usd, 4),
        }
        for name, m in report.summary.models.items()
    ]


def _ranking_rows(ranking: HumanRanking) -> list[dict[str, str]]:
    return [
        {
            "model": name,
            "strength": _num(ranking.strengths.get(name), 2),
            "95% interval": _interval(ranking.ci95.get(name), 2),
        }
        for name in ranking.ranking
    ]


def render_report_markdown(report: SheetReport) -> str:
    """The report as Markdown: summary, comparisons, human ranking, then the table."""
    sheet, summary = report.sheet, report.summary
    out = [f"# {sheet.name}: llmpick workbench report\n"]
    run = f", run `{sheet.run_id}`" if sheet.run_id else ""
    out.append(
        f"{sheet.n_rows} rows{run}; {report.progress.done} of {report.progress.total} cells "
        f"({report.progress.state}); generated {report.generated_at}.\n"
    )
    if summary is not None:
        out.append(f"## Summary ({summary.scorer or 'no scorer'}, measured)\n")
        out.append(rows_to_markdown(_summary_rows(report)))
        out.extend(f"- {c.sentence}" for c in summary.comparisons)
        out.append("")
    ranking = report.human_ranking
    if ranking.votes:
        out.append(f"## Human ranking ({ranking.votes} blind votes, Bradley–Terry)\n")
        out.append(rows_to_markdown(_ranking_rows(ranking)))
        agreement = ranking.judge_agreement
        if agreement is not None and agreement.kappa is not None:
            out.append(
                f"Agreement with the LLM judge on {agreement.n} pairs: Cohen's kappa "
                f"{agreement.kappa:.2f}.\n"
            )
    if report.table:
        out.append("## Cells\n")
        out.append(rows_to_markdown(report.table))
    return "\n".join(out)


def render_report_json(report: SheetReport) -> str:
    """The report as JSON (with ``schema_version``)."""
    return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def render_report_html(report: SheetReport, templates: Environment) -> str:
    """The report as one self-contained HTML file (``templates``: the workbench's, autoescaped)."""
    models = list(report.summary.models) if report.summary else []
    categories = report.summary.categories if report.summary else {}
    first = report.table[0] if report.table else {}
    return templates.get_template("report.html").render(
        report=report,
        sheet=report.sheet,
        summary=report.summary,
        summary_rows=_summary_rows(report),
        ranking=report.human_ranking,
        ranking_rows=_ranking_rows(report.human_ranking),
        models=models,
        categories=categories,
        table_models=[k for k in first if f"{k} score" in first],
        num=_num,
        interval=_interval,
    )


def _run_of(wb: WorkbenchStore, sheet_id: str) -> str:
    run_id = wb.get_sheet(sheet_id).run_id
    if run_id is None:
        raise HTTPException(409, "nothing to export yet: add a model column")
    return run_id


def _download(text: str, media_type: str, filename: str, inline: bool = False) -> PlainTextResponse:
    headers = {
        "content-disposition": f'{"inline" if inline else "attachment"}; filename="{filename}"'
    }
    if inline:  # shown by the browser: a sandboxed page that may fetch and run nothing
        headers["content-security-policy"] = _REPORT_CSP
        headers["x-content-type-options"] = "nosniff"
    return PlainTextResponse(text, media_type=media_type, headers=headers)


_REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


def _report_from(db_path: Path, sheet: SheetInfo, *parts: Any) -> SheetReport:
    with open_store(db_path) as store:  # its own connection: this runs in a worker thread
        return sheet_report(store, sheet, *parts)


_REPORT_FORMATS = {
    "html": "text/html; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "json": "application/json",
}


def add_export_routes(router: APIRouter, w: Workbench) -> None:
    """``/sheets/ID/export.{csv,jsonl,html,md,json}`` on the workbench's router."""

    @router.get("/sheets/{sheet_id}/export.csv", include_in_schema=False)
    async def export_csv(sheet_id: str) -> PlainTextResponse:
        run_id = _run_of(w.wb, sheet_id)
        text = rows_to_csv(side_by_side(w.wb.store, run_id))
        return _download(text, "text/csv", f"{run_id}.csv")

    @router.get("/sheets/{sheet_id}/export.jsonl", include_in_schema=False)
    async def export_jsonl(sheet_id: str) -> PlainTextResponse:
        run_id = _run_of(w.wb, sheet_id)
        lines = [
            json.dumps({"schema_version": SCHEMA_VERSION, "run_id": run_id, **cell},
                       ensure_ascii=False)
            for cell in cell_rows(w.wb.store, run_id)
        ]  # fmt: skip
        text = "".join(line + "\n" for line in lines)
        return _download(text, "application/x-ndjson", f"{run_id}.jsonl")

    @router.get("/sheets/{sheet_id}/report.{fmt}", include_in_schema=False)
    async def export_report(sheet_id: str, fmt: str) -> PlainTextResponse:
        if fmt not in _REPORT_FORMATS:
            raise HTTPException(404, "reports are .html, .md or .json")
        sheet = w.wb.get_sheet(sheet_id)
        progress = w.jobs.progress(w.wb, sheet)
        summary = await w.summary(sheet.run_id) if sheet.run_id else None
        ranking = human_ranking(w.wb, sheet)
        report = await asyncio.to_thread(_report_from, w.db_path, sheet, progress, summary, ranking)
        if fmt == "html":
            text = render_report_html(report, w.templates)
        elif fmt == "md":
            text = render_report_markdown(report)
        else:
            text = render_report_json(report)
        return _download(text, _REPORT_FORMATS[fmt], f"workbench-{sheet.id}.{fmt}", inline=True)
