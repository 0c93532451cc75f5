"""The workbench's tables in the store: sheets, their columns, blind votes, grid pages.

A sheet keeps the records it was made from (so it needs no file) and the
settings every model column shares; its cells live in an ordinary evaluation
run (``runs``/``cells``), the newest run whose dataset is ``workbench:SHEET``.
The grid reads one page of rows at a time with SQL ``LIMIT``/``OFFSET``, so a
10,000-row run opens as fast as a 10-row one.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from llmpick.backends.base import Message
from llmpick.errors import DataError, UsageError
from llmpick.evaluate.dataset import ColumnMapping, Dataset, build_rows
from llmpick.store import Store
from llmpick.ui.models import ColumnInfo, SheetInfo, SheetSettings, UsedDataset

__all__ = ["WorkbenchStore", "dataset_source"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def dataset_source(sheet_id: str) -> str:
    """The ``dataset`` recorded on a sheet's runs."""
    return f"workbench:{sheet_id}"


def _jinja_template(template: str | None, columns: list[str]) -> str | None:
    """Accept ``{column}`` placeholders as well as Jinja2's ``{{ column }}``."""
    if not template or "{{" in template:
        return template or None

    def swap(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in columns:
            raise DataError(
                f"the template names '{{{name}}}', which is not a column",
                f"columns: {', '.join(columns)}",
            )
        return "{{ " + name + " }}"

    return _PLACEHOLDER.sub(swap, template)


class WorkbenchStore:
    """Typed access to the workbench tables of an open :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    # -- sheets ----------------------------------------------------------------------

    def create_sheet(
        self, name: str, records: list[dict[str, Any]], settings: SheetSettings
    ) -> str:
        """Store a new sheet made of ``records``; returns its id."""
        if not records:
            raise DataError(f"{name} has no rows", "upload a file with at least one row")
        sheet_id = uuid.uuid4().hex[:10]
        self.dataset(sheet_id, records, settings, name)  # fails now on a bad mapping
        self.db.execute(
            "INSERT INTO workbench_sheets (id, created_at, name, records, mapping, template,"
            " params) VALUES (?,?,?,?,?,?,?)",
            (
                sheet_id,
                _now(),
                name,
                json.dumps(records, ensure_ascii=False, default=str),
                settings.model_dump_json(),
                settings.template,
                "{}",
            ),
        )
        return sheet_id

    def used_datasets(self, limit: int = 20) -> list[UsedDataset]:
        """Datasets that evaluation runs (not sheets) used, newest run of each first."""
        rows = self.db.execute(
            "SELECT r.id, r.dataset, r.created_at, r.models,"
            " (SELECT count(*) FROM run_rows WHERE run_id = r.id) FROM runs r"
            " WHERE r.dataset NOT LIKE 'workbench:%' AND r.rowid = (SELECT max(rowid) FROM runs"
            "  WHERE dataset = r.dataset) ORDER BY r.created_at DESC LIMIT ?",
            (limit,),
        )
        return [
            UsedDataset(run_id=r[0], dataset=r[1], created_at=r[2], n_rows=r[4],
                        models=[m["name"] for m in json.loads(r[3])])
            for r in rows
        ]  # fmt: skip

    def sheet_from_run(self, run_id: str) -> str:
        """A new sheet holding the rows an earlier run asked (its prompts as they were sent)."""
        run = self.store.get_run(run_id)
        records = []
        for row in self.store.get_rows(run.id):
            asked = [m["content"] for m in row.messages if m.get("role") == "user"]
            records.append({**row.data, "id": row.row_id, "prompt": asked[-1] if asked else "",
                            "expected": row.expected, "category": row.category})  # fmt: skip
        has = {k for r in records for k, v in r.items() if v not in (None, "")}
        settings = SheetSettings(
            prompt="prompt",
            expected="expected" if "expected" in has else None,
            category="category" if "category" in has else None,
        )
        name = f"{run.dataset.replace(chr(92), '/').rsplit('/', 1)[-1]} (run {run.id[:8]})"
        return self.create_sheet(name, records, settings)

    def list_sheets(self) -> list[SheetInfo]:
        """Every sheet, newest first."""
        ids = [r[0] for r in self.db.execute("SELECT id FROM workbench_sheets ORDER BY rowid DESC")]
        return [self.get_sheet(i) for i in ids]

    def get_sheet(self, sheet_id: str) -> SheetInfo:
        """The sheet ``sheet_id`` with its columns and current run."""
        row = self.db.execute(
            "SELECT id, name, created_at, mapping, json_array_length(records) AS n,"
            " (SELECT group_concat(key, char(31)) FROM (SELECT DISTINCT key FROM"
            "   json_each(json_extract(records, '$[0]')))) AS keys"
            " FROM workbench_sheets WHERE id = ?",
            (sheet_id,),
        ).fetchone()
        if row is None:
            raise UsageError(f"no sheet '{sheet_id}'", "open the workbench's start page")
        columns = [
            ColumnInfo(position=r[0], kind=r[1], spec=r[2])
            for r in self.db.execute(
                "SELECT position, kind, spec FROM workbench_columns WHERE sheet_id = ?"
                " ORDER BY position",
                (sheet_id,),
            )
        ]
        settings = SheetSettings.model_validate_json(row["mapping"])
        for c in columns:
            if c.kind == "model" and c.spec in settings.columns:
                c.settings = settings.columns[c.spec]
        return SheetInfo(
            id=row["id"],
            name=row["name"],
            created_at=row["created_at"],
            n_rows=row["n"],
            data_columns=(row["keys"] or "").split("\x1f") if row["keys"] else [],
            settings=settings,
            columns=columns,
            run_id=self.current_run(sheet_id),
        )

    def records(self, sheet_id: str) -> list[dict[str, Any]]:
        """The rows the sheet was made from."""
        row = self.db.execute(
            "SELECT records FROM workbench_sheets WHERE id = ?", (sheet_id,)
        ).fetchone()
        if row is None:
            raise UsageError(f"no sheet '{sheet_id}'")
        return list(json.loads(row[0]))

    def dataset(
        self,
        sheet_id: str,
        records: list[dict[str, Any]] | None = None,
        settings: SheetSettings | None = None,
        name: str | None = None,
    ) -> Dataset:
        """The sheet as a :class:`Dataset` the evaluation runner takes."""
        if records is None or settings is None:
            sheet = self.get_sheet(sheet_id)
            records, settings, name = self.records(sheet_id), sheet.settings, sheet.name
        source = dataset_source(sheet_id)
        columns = list(dict.fromkeys(k for r in records[:1] for k in r))
        mapping = ColumnMapping(
            prompt=settings.prompt, expected=settings.expected, category=settings.category
        )
        template = _jinja_template(settings.template, columns)
        # from the web a template is always inline text, never a file name
        cols, rows, expected = build_rows(
            records, mapping, template, source=source, template_files=False
        )
        return Dataset(
            name=name or sheet_id,
            source=source,
            columns=cols,
            rows=rows,
            expected_column=expected,
        )

    def column_prompts(self, sheet_id: str, template: str) -> list[list[Message]]:
        """Each row's messages with ``template`` instead of the sheet's (a column's own)."""
        sheet = self.get_sheet(sheet_id)
        settings = sheet.settings.model_copy(update={"template": template})
        dataset = self.dataset(sheet_id, self.records(sheet_id), settings, sheet.name)
        return [row.messages for row in dataset.rows]

    def update_settings(self, sheet_id: str, settings: SheetSettings) -> None:
        """Change the mapping, template or sampling (the next run uses them)."""
        self.dataset(sheet_id, self.records(sheet_id), settings)
        self.db.execute(
            "UPDATE workbench_sheets SET mapping = ?, template = ? WHERE id = ?",
            (settings.model_dump_json(), settings.template, sheet_id),
        )

    def add_column(self, sheet_id: str, kind: str, spec: str) -> ColumnInfo:
        """Append a column; adding the same one twice is an error."""
        exists = self.db.execute(
            "SELECT 1 FROM workbench_columns WHERE sheet_id = ? AND kind = ? AND spec = ?",
            (sheet_id, kind, spec),
        ).fetchone()
        if exists:
            raise UsageError(f"the sheet already has the {kind} column '{spec}'")
        position = int(
            self.db.execute(
                "SELECT coalesce(max(position), -1) + 1 FROM workbench_columns WHERE sheet_id = ?",
                (sheet_id,),
            ).fetchone()[0]
        )
        self.db.execute(
            "INSERT INTO workbench_columns (sheet_id, position, kind, spec, created_at)"
            " VALUES (?,?,?,?,?)",
            (sheet_id, position, kind, spec, _now()),
        )
        return ColumnInfo(position=position, kind=kind, spec=spec)

    def current_run(self, sheet_id: str) -> str | None:
        """The newest run of the sheet (the one the grid shows)."""
        row = self.db.execute(
            "SELECT id FROM runs WHERE dataset = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (dataset_source(sheet_id),),
        ).fetchone()
        return None if row is None else str(row[0])

    def set_pairwise(self, sheet_id: str, verdicts: list[dict[str, Any]]) -> None:
        """Keep the LLM judge's per-row pairwise verdicts (for agreement with votes)."""
        self.db.execute(
            "UPDATE workbench_sheets SET pairwise = ? WHERE id = ?",
            (json.dumps(verdicts), sheet_id),
        )

    def pairwise(self, sheet_id: str) -> list[dict[str, Any]]:
        """The LLM judge's pairwise verdicts, if a pairwise column ran."""
        row = self.db.execute(
            "SELECT pairwise FROM workbench_sheets WHERE id = ?", (sheet_id,)
        ).fetchone()
        return list(json.loads(row[0])) if row and row[0] else []
