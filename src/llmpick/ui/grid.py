"""One page of the workbench grid, read with SQL so a large run never loads whole.

Rows come from the run's ``run_rows`` (``LIMIT``/``OFFSET`` on ``row_index``),
cells and scores only for the rows of the page. Filters (category, failed
only, search text, disagreement between models on the first scorer) are SQL
conditions on the same query, so the page count stays exact.
"""

from __future__ import annotations

import json
from typing import Any

from llmpick.evaluate.scorers.base import ScorerSpec
from llmpick.evaluate.scoring import scorer_key
from llmpick.store import Store
from llmpick.ui.models import GridCell, GridPage, GridRow, SheetInfo
from llmpick.ui.sheets import WorkbenchStore

__all__ = ["GridFilter", "grid_page"]

#: the most rows one page may ask for
MAX_PAGE = 500


class GridFilter:
    """Which rows the grid shows."""

    def __init__(
        self,
        category: str | None = None,
        failed: bool = False,
        search: str | None = None,
        disagree: bool = False,
        sort_model: str | None = None,
        descending: bool = False,
    ) -> None:
        self.category = category or None
        self.failed = failed
        self.search = search or None
        self.disagree = disagree
        #: order rows by this model's score on the first scorer (else dataset order)
        self.sort_model = sort_model or None
        self.descending = descending


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _where(run_id: str, primary: str | None, f: GridFilter) -> tuple[str, list[Any]]:
    clauses = ["r.run_id = ?"]
    args: list[Any] = [run_id]
    if f.category:
        clauses.append("r.category = ?")
        args.append(f.category)
    if f.search:
        clauses.append("(r.data LIKE ? ESCAPE '\\' OR r.row_id IN (SELECT c.row_id FROM cells c"
                       " JOIN generations g ON g.cache_key = c.generation_key"
                       " WHERE c.run_id = ? AND g.output LIKE ? ESCAPE '\\'))")  # fmt: skip
        args += [_like(f.search), run_id, _like(f.search)]
    if f.failed:
        clauses.append(
            "r.row_id IN (SELECT row_id FROM cells WHERE run_id = ? AND error IS NOT NULL)"
        )
        args.append(run_id)
    if f.disagree and primary:
        clauses.append(
            "r.row_id IN (SELECT c.row_id FROM cells c JOIN scores s ON s.cell_id = c.id"
            " WHERE c.run_id = ? AND s.scorer_key = ? GROUP BY c.row_id"
            " HAVING max(s.value) != min(s.value))"
        )
        args += [run_id, primary]
    return " AND ".join(clauses), args


def _primary(store: Store, run_id: str) -> str | None:
    row = store.db.execute("SELECT scorers FROM runs WHERE id = ?", (run_id,)).fetchone()
    for raw in json.loads(row[0]) if row else []:
        spec = ScorerSpec.model_validate(raw)
        if spec.name != "pairwise":
            return scorer_key(spec)
    return None


def grid_page(
    wb: WorkbenchStore, sheet: SheetInfo, offset: int, limit: int, f: GridFilter | None = None
) -> GridPage:
    """Rows ``offset`` … ``offset + limit`` of the sheet's grid (after filters)."""
    f = f or GridFilter()
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    if sheet.run_id is None:
        return _data_page(wb, sheet, offset, limit, f)
    db = wb.db
    run_id = sheet.run_id
    primary = _primary(wb.store, run_id)
    where, args = _where(run_id, primary, f)
    total = int(db.execute(f"SELECT count(*) FROM run_rows r WHERE {where}", args).fetchone()[0])
    order, order_args = "r.row_index", []
    if f.sort_model and primary:
        # rows without a score sort last either way; ties keep dataset order
        score = (
            "(SELECT s.value FROM cells c JOIN scores s ON s.cell_id = c.id"
            " WHERE c.run_id = r.run_id AND c.row_id = r.row_id AND c.model = ?"
            " AND c.repeat = 0 AND s.scorer_key = ?)"
        )
        order = f"{score} IS NULL, {score} {'DESC' if f.descending else 'ASC'}, r.row_index"
        order_args = [f.sort_model, primary, f.sort_model, primary]
    rows = db.execute(
        "SELECT r.row_id, r.row_index, r.category, r.expected, r.messages FROM run_rows r"
        f" WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
        [*args, *order_args, limit, offset],
    ).fetchall()
    row_ids = [r["row_id"] for r in rows]
    cells = _cells(wb.store, run_id, row_ids, primary)
    models = sheet.models
    out = []
    for r in rows:
        messages = json.loads(r["messages"])
        mine = cells.get(r["row_id"], {})
        out.append(
            GridRow(
                row_id=r["row_id"],
                index=r["row_index"],
                category=r["category"],
                prompt=messages[-1]["content"] if messages else "",
                expected=r["expected"],
                cells=[mine.get(m) or GridCell(model=m) for m in models],
            )
        )
    return GridPage(
        sheet_id=sheet.id,
        run_id=run_id,
        models=models,
        offset=offset,
        limit=limit,
        total_rows=total,
        rows=out,
    )


def _cells(
    store: Store, run_id: str, row_ids: list[str], primary: str | None
) -> dict[str, dict[str, GridCell]]:
    if not row_ids:
        return {}
    marks = ",".join("?" * len(row_ids))
    found = store.db.execute(
        "SELECT c.id, c.model, c.row_id, c.error, g.output, g.latency_s FROM cells c"
        " LEFT JOIN generations g ON g.cache_key = c.generation_key"
        f" WHERE c.run_id = ? AND c.repeat = 0 AND c.row_id IN ({marks})",
        [run_id, *row_ids],
    ).fetchall()
    by_id = {
        r["id"]: GridCell(
            model=r["model"], output=r["output"], error=r["error"], latency_s=r["latency_s"]
        )
        for r in found
    }
    rows_of = {r["id"]: r["row_id"] for r in found}
    if by_id:
        id_marks = ",".join("?" * len(by_id))
        for s in store.db.execute(
            "SELECT cell_id, scorer_key, value, label, explanation FROM scores"
            f" WHERE cell_id IN ({id_marks})",
            list(by_id),
        ):
            cell = by_id[s["cell_id"]]
            shown = s["label"] if s["value"] is None else f"{s['value']:.2f}"
            cell.scores[s["scorer_key"]] = f"{shown}: {s['explanation']}".strip()
            if s["scorer_key"] == primary:
                cell.score = s["value"]
    table: dict[str, dict[str, GridCell]] = {}
    for cell_id, cell in by_id.items():
        table.setdefault(rows_of[cell_id], {})[cell.model] = cell
    return table


def _data_page(
    wb: WorkbenchStore, sheet: SheetInfo, offset: int, limit: int, f: GridFilter
) -> GridPage:
    """Before any column ran: the rows as the models will see them."""
    rows = wb.dataset(sheet.id).rows
    if f.category:
        rows = [r for r in rows if r.category == f.category]
    if f.search:
        needle = f.search.lower()
        rows = [r for r in rows if needle in json.dumps(r.data, default=str).lower()]
    page = rows[offset : offset + limit]
    return GridPage(
        sheet_id=sheet.id,
        run_id=None,
        models=sheet.models,
        offset=offset,
        limit=limit,
        total_rows=len(rows),
        rows=[
            GridRow(
                row_id=r.id,
                index=r.index,
                category=r.category,
                prompt=r.prompt,
                expected=r.expected,
                cells=[GridCell(model=m) for m in sheet.models],
            )
            for r in page
        ],
    )
