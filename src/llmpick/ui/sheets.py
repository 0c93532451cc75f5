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
        self,
        name: str,
        records: list[dict[str, Any]],
        settings: SheetSettings,
        owner: str = "local",
    ) -> str:
        """Store a new sheet made of ``records``, owned by ``owner``; returns its id."""
        if not records:
            raise DataError(f"{name} has no rows", "upload a file with at least one row")
        sheet_id = uuid.uuid4().hex[:10]
        self.dataset(sheet_id, records, settings, name)  # fails now on a bad mapping
        self.db.execute(
            "INSERT INTO workbench_sheets (id, created_at, name, records, mapping, template,"
            " params, owner) VALUES (?,?,?,?,?,?,?,?)",
            (
                sheet_id,
                _now(),
                name,
                json.dumps(records, ensure_ascii=False, default=str),
                settings.model_dump_json(),
                settings.template,
                "{}",
                owner,
            ),
        )
        return sheet_id

    # -- who sees what -----------------------------------------------------------------

    @staticmethod
    def _sees(owner: str, shared_with: str, viewer: str) -> bool:
        shared = json.loads(shared_with or "[]")
        return owner == viewer or viewer in shared or "*" in shared

    def sheet_visible(self, sheet_id: str, viewer: str) -> bool:
        """Whether ``viewer`` (a key's name, or ``local``) owns the sheet or has it shared."""
        row = self.db.execute(
            "SELECT owner, shared_with FROM workbench_sheets WHERE id = ?", (sheet_id,)
        ).fetchone()
        return row is not None and self._sees(row[0], row[1], viewer)

    def run_visible(self, run_id: str, viewer: str) -> bool:
        """A sheet's run follows its sheet; an eval run its owner (``local`` for the CLI's)."""
        row = self.db.execute(
            "SELECT owner, shared_with, dataset FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return False
        if str(row[2]).startswith("workbench:"):
            return self.sheet_visible(str(row[2]).removeprefix("workbench:"), viewer)
        return self._sees(row[0], row[1], viewer)

    def share_sheet(self, sheet_id: str, owner: str, names: list[str]) -> None:
        """Share the sheet with ``names`` (``*``: every key); only its owner may."""
        row = self.db.execute(
            "SELECT owner FROM workbench_sheets WHERE id = ?", (sheet_id,)
        ).fetchone()
        if row is None or row[0] != owner:
            raise UsageError(f"no sheet '{sheet_id}'", "only the sheet's owner can share it")
        self.db.execute(
            "UPDATE workbench_sheets SET shared_with = ? WHERE id = ?",
            (json.dumps(sorted(set(names))), sheet_id),
        )

    def used_datasets(self, limit: int = 20, viewer: str | None = None) -> list[UsedDataset]:
        """Datasets that evaluation runs (not sheets) used, newest run of each first.

        With ``viewer``, only runs it owns or has shared.
        """
        rows = [
            r for r in self.db.execute(
                "SELECT r.id, r.dataset, r.created_at, r.models,"
                " (SELECT count(*) FROM run_rows WHERE run_id = r.id), r.owner, r.shared_with"
                " FROM runs r WHERE r.dataset NOT LIKE 'workbench:%' AND r.rowid = (SELECT"
                " max(rowid) FROM runs WHERE dataset = r.dataset) ORDER BY r.created_at DESC",
            )
            if viewer is None or self._sees(r[5], r[6], viewer)
        ][:limit]  # fmt: skip
        return [
            UsedDataset(run_id=r[0], dataset=r[1], created_at=r[2], n_rows=r[4],
                        models=[m["name"] for m in json.loads(r[3])])
            for r in rows
        ]  # fmt: skip

    def sheet_from_run(self, run_id: str, owner: str = "local") -> str:
        """A new sheet holding an earlier run's rows, model outputs and scores.

        The rows are the prompts as they were sent; the run's cells and scores are
        copied (from the store, nothing is generated again) into the sheet's own run,
        and each model of the run becomes a model column, so the grid opens full.
        """
        run = self.store.get_run(run_id)
        records = []
        for row in self.store.get_rows(run.id):
            asked = [m["content"] for m in row.messages if m.get("role") == "user"]
            records.append({**row.data, "id": row.row_id, "prompt": asked[-1] if asked else "",
                            "expected": row.expected, "category": row.category})  # fmt: skip
        has = {k for r in records for k, v in r.items() if v not in (None, "")}
        params = json.loads(self.db.execute("SELECT params FROM runs WHERE id = ?",
                                            (run.id,)).fetchone()[0] or "{}")  # fmt: skip
        settings = SheetSettings(
            prompt="prompt",
            expected="expected" if "expected" in has else None,
            category="category" if "category" in has else None,
            max_tokens=min(8192, max(1, int(params.get("max_tokens") or 64))),
            temperature=min(2.0, max(0.0, float(params.get("temperature") or 0.0))),
            seed=params.get("seed"),
        )
        name = f"{run.dataset.replace(chr(92), '/').rsplit('/', 1)[-1]} (run {run.id[:8]})"
        sheet_id = self.create_sheet(name, records, settings, owner=owner)
        with self.store.transaction():
            self._copy_run(run.id, sheet_id)
            for model in self.db.execute("SELECT DISTINCT model FROM cells WHERE run_id = ?"
                                         " ORDER BY id", (run.id,)).fetchall():  # fmt: skip
                self.add_column(sheet_id, "model", model[0])
        return sheet_id

    def _copy_run(self, run_id: str, sheet_id: str) -> None:
        """The run's rows, cells and scores as a new run of the sheet (same generations)."""
        new_id = uuid.uuid4().hex
        self.db.execute(
            "INSERT INTO runs (id, created_at, finished_at, status, fingerprint, dataset,"
            " dataset_sha256, models, scorers, params, repeats, judge, summary)"
            " SELECT ?, created_at, finished_at, status, 'copy:' || fingerprint, ?,"
            " dataset_sha256, models, scorers, params, repeats, judge, summary"
            " FROM runs WHERE id = ?",
            (new_id, dataset_source(sheet_id), run_id),
        )
        self.db.execute(
            "INSERT INTO run_rows (run_id, row_id, row_index, category, expected, messages, data)"
            " SELECT ?, row_id, row_index, category, expected, messages, data FROM run_rows"
            " WHERE run_id = ?",
            (new_id, run_id),
        )
        for cell in self.db.execute("SELECT * FROM cells WHERE run_id = ?", (run_id,)).fetchall():
            copied = self.db.execute(
                "INSERT INTO cells (run_id, model, row_id, repeat, cache_key, row_sha256,"
                " generation_key, cached, cost_usd, error, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (new_id, cell["model"], cell["row_id"], cell["repeat"], cell["cache_key"],
                 cell["row_sha256"], cell["generation_key"], cell["cached"], cell["cost_usd"],
                 cell["error"], cell["created_at"]),
            ).lastrowid  # fmt: skip
            self.db.execute(
                "INSERT INTO scores (cell_id, scorer_key, scorer, value, label, explanation,"
                " created_at) SELECT ?, scorer_key, scorer, value, label, explanation,"
                " created_at FROM scores WHERE cell_id = ?",
                (copied, cell["id"]),
            )

    def list_sheets(self, viewer: str | None = None) -> list[SheetInfo]:
        """Every sheet (``viewer``'s own and shared ones only, when given), newest first."""
        ids = [
            r[0]
            for r in self.db.execute(
                "SELECT id, owner, shared_with FROM workbench_sheets ORDER BY rowid DESC"
            )
            if viewer is None or self._sees(r[1], r[2], viewer)
        ]
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
