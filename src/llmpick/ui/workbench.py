"""The workbench's shared state: store, jobs, templates, the models it may run.

:class:`Workbench` is what every route of :mod:`llmpick.ui.app` and
:mod:`llmpick.ui.export` works on; it lives here so those modules import it
without importing each other.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.backends.pool import ModelPool
from llmpick.context import Context
from llmpick.evaluate.results import (
    EvalResult,
    summarize,
)
from llmpick.store import DEFAULT_DB, Store, open_store
from llmpick.ui.capabilities import Admission, ModelCapabilities
from llmpick.ui.jobs import Jobs
from llmpick.ui.models import (
    SCHEMA_VERSION,
    SheetInfo,
)
from llmpick.ui.security import (
    KeyCheck,
    KeysRequired,
    csrf_token,
)
from llmpick.ui.sheets import WorkbenchStore

__all__ = ["MAX_UPLOAD_BYTES", "AdmissionFor", "Workbench"]

#: largest upload accepted, in bytes
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
#: the gateway's admission for a logged-in key (None without keys), from its secret
AdmissionFor = Callable[[str | None], Awaitable[Admission | None]]


class Workbench:
    """What the workbench's routes share: the store, the jobs, the templates.

    ``pool``: the model pool its columns run on (the gateway's, so the page and
    the API share one loaded model); without one the workbench opens its own.
    ``key_check``: with it, every route needs a key it accepts; ``keys_required``
    then says whether keys exist yet — while none does, the page answers only
    clients on this machine (loopback) and asks for no login.
    """

    def __init__(
        self,
        context: Context,
        db_path: Path | str = DEFAULT_DB,
        prefix: str = "",
        key_check: KeyCheck | None = None,
        *,
        pool: ModelPool | None = None,
        keys_required: KeysRequired | None = None,
        served: Callable[[], list[str]] | None = None,
        allow_any_model: bool = False,
        admission: AdmissionFor | None = None,
    ) -> None:
        self.context = context
        self.served = served
        self.allow_any_model = allow_any_model
        self.admission = admission
        self.db_path = Path(db_path)
        self.prefix = prefix.rstrip("/")
        self.key_check = key_check
        self.keys_required = keys_required
        self.jobs = Jobs(context, self.db_path, pool)
        self._store: Store | None = None
        self.rng = random.Random()
        self._summaries: dict[tuple[str, int, int], EvalResult] = {}
        self._summary_lock = asyncio.Lock()
        self.templates = Environment(
            loader=PackageLoader("llmpick.ui", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )

    @property
    def wb(self) -> WorkbenchStore:
        """The store, opened on first use (in the event loop's thread, which uses it)."""
        if self._store is None:
            self._store = open_store(self.db_path)
        return WorkbenchStore(self._store)

    async def aclose(self) -> None:
        """Stop running jobs (they resume from the store next time) and close the store."""
        await self.jobs.aclose()
        if self._store is not None:
            self._store.close()
            self._store = None

    async def summary(self, run_id: str) -> EvalResult:
        """The run's summary: the one stored when it finished, else computed (in a thread).

        A live summary is cached per (cells, scores) count, so polling while a
        run fills recomputes it only when something changed.
        """
        row = self.wb.db.execute(
            "SELECT status, summary, (SELECT count(*) FROM cells WHERE run_id = :id),"
            " (SELECT count(*) FROM scores s JOIN cells c ON c.id = s.cell_id"
            "  WHERE c.run_id = :id) FROM runs WHERE id = :id",
            {"id": run_id},
        ).fetchone()
        if row is not None and row[0] in ("finished", "incomplete") and row[1]:
            return EvalResult.model_validate(json.loads(row[1]))
        key = (run_id, row[2] if row else 0, row[3] if row else 0)
        async with self._summary_lock:  # one computation at a time, however often polled
            if key not in self._summaries:
                result = await asyncio.to_thread(_summarize, self.db_path, run_id)
                self._summaries = {key: result}
        return self._summaries[key]

    def larger_bodies(self) -> dict[str, int]:
        """Paths that take more than the JSON routes' body limit: the upload."""
        return {self.prefix + "/api/sheets": MAX_UPLOAD_BYTES}

    def model_choices(self) -> list[str]:
        """Models the page offers: served ones, those named in llmpick.yaml, bundled ones."""
        served = self.served() if self.served is not None else []
        configured = list(self.context.settings.config.models)
        return list(dict.fromkeys([*served, *configured, *BUNDLED_MODELS]))

    @property
    def capabilities(self) -> ModelCapabilities:
        """What the page's columns may name (:mod:`llmpick.ui.capabilities`)."""
        return ModelCapabilities(self.model_choices(), allow_any=self.allow_any_model)

    def check_model(self, request: Request, spec: str, what: str = "model") -> None:
        """403 unless the operator declared ``spec`` and the logged-in key may use it."""
        self.capabilities.check(spec, what)
        admission: Admission | None = getattr(request.state, "llmpick_admission", None)
        if admission is not None and not admission.may_use(spec):
            raise HTTPException(403, f"your key may not use '{spec}'")

    def start_job(self, request: Request, sheet: SheetInfo) -> None:
        """Run the sheet's missing cells as the logged-in key, on the declared models only."""
        for spec in [*sheet.models, *(c.spec for c in sheet.columns if c.kind == "pairwise")]:
            self.check_model(request, spec)
        if sheet.settings.judge_model:
            self.check_model(request, sheet.settings.judge_model, "judge model")
        admission = getattr(request.state, "llmpick_admission", None)
        self.jobs.start(sheet, self.wb, self.capabilities, admission)

    def render(self, request: Request, name: str, **values: Any) -> HTMLResponse:
        """Render a page with the CSRF token, the base URL and the voter's name."""
        response = HTMLResponse()
        token = csrf_token(request, response)
        html = self.templates.get_template(name).render(
            base=self.prefix, csrf=token, schema_version=SCHEMA_VERSION, **values
        )
        response.body = response.render(html)
        response.headers["content-length"] = str(len(response.body))
        response.headers["content-security-policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
            " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
        return response


def _summarize(db_path: Path, run_id: str) -> EvalResult:
    with open_store(db_path) as store:  # its own connection: this runs in a worker thread
        return summarize(store, run_id)
