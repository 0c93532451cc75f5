"""The workbench web app: routes, pages and JSON API, mountable on the gateway.

``create_ui_app()`` is the standalone app of ``llmpick ui``;
``mount_workbench(app, workbench)`` adds the same routes to another FastAPI
app (``llmpick serve --ui`` mounts it under ``/ui``). Pages are rendered by
Jinja2 with autoescape on; the page's JavaScript writes untrusted text only
through ``textContent``. Every JSON answer has ``schema_version``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmpick.bodylimit import BodySizeLimit
from llmpick.context import Context
from llmpick.errors import LlmpickError, UsageError
from llmpick.evaluate.dataset import read_records
from llmpick.hostcheck import HostCheck, HostPolicy
from llmpick.jsonbody import OrjsonRoute
from llmpick.store import DEFAULT_DB
from llmpick.ui.capabilities import Admission
from llmpick.ui.export import add_export_routes
from llmpick.ui.grid import GridFilter, grid_page
from llmpick.ui.models import (
    SCHEMA_VERSION,
    AddColumn,
    HumanRanking,
    Progress,
    ShareSheet,
    SheetInfo,
    SheetSettings,
    SummaryView,
    VoteCast,
    VoteResult,
    VoteTask,
)
from llmpick.ui.security import (
    KeyCheck,
    KeysRequired,
    is_loopback,
    key_owner,
    require_csrf,
)
from llmpick.ui.sheets import WorkbenchStore
from llmpick.ui.votes import cast_vote, human_ranking, next_vote
from llmpick.ui.workbench import MAX_UPLOAD_BYTES, Workbench

__all__ = ["Workbench", "create_ui_app", "mount_workbench", "workbench_router"]

#: largest body of the other routes (settings, columns, login) of ``llmpick ui``
MAX_JSON_BYTES = 1_000_000
_STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
_PAGE_ROWS = 50


def _viewer(request: Request) -> str:
    """Who is asking: the logged-in key's name, or ``local`` without keys."""
    return getattr(request.state, "llmpick_user", None) or "local"


def _visible(w: Workbench) -> Any:
    """Every route naming a sheet, run or vote answers only its owner and those it is shared with.

    Others get the same answer as for a sheet that does not exist.
    """

    async def check(request: Request) -> None:
        viewer = _viewer(request)
        params = request.path_params
        sheet_id = params.get("sheet_id")
        if sheet_id is None and "vote_id" in params:
            row = w.wb.db.execute(
                "SELECT sheet_id FROM workbench_votes WHERE id = ?", (params["vote_id"],)
            ).fetchone()
            sheet_id = row[0] if row else params["vote_id"]
        if sheet_id is not None and not w.wb.sheet_visible(sheet_id, viewer):
            raise UsageError(f"no sheet '{sheet_id}'", "open the workbench's start page")
        if "run_id" in params and not w.wb.run_visible(params["run_id"], viewer):
            raise UsageError(f"no run '{params['run_id']}'", "open the workbench's start page")

    return check


def _voter(request: Request) -> str:
    return (
        getattr(request.state, "llmpick_user", None)
        or request.cookies.get("llmpick_voter", "local")[:80]
    )


def _grid_filter(
    category: str | None = None, failed: bool = False, search: str | None = None,
    disagree: bool = False, sort: str | None = None,
) -> GridFilter:  # fmt: skip
    """``sort``: ``MODEL`` (score ascending) or ``-MODEL`` (descending)."""
    descending = bool(sort and sort.startswith("-"))
    model = sort[1:] if sort and descending else sort
    return GridFilter(category=category, failed=failed, search=search, disagree=disagree,
                      sort_model=model, descending=descending)  # fmt: skip


def workbench_router(workbench: Workbench) -> APIRouter:
    """All of the workbench's routes, for ``app.include_router(router, prefix=...)``."""
    w = workbench
    csrf = [Depends(require_csrf)]
    router = APIRouter(
        route_class=OrjsonRoute, dependencies=[Depends(_login(w)), Depends(_visible(w))]
    )

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request) -> HTMLResponse:
        viewer = _viewer(request)
        return w.render(
            request,
            "index.html",
            sheets=w.wb.list_sheets(viewer),
            datasets=w.wb.used_datasets(viewer=viewer),
        )

    @router.post("/api/sheets/from-run/{run_id}", dependencies=csrf)
    async def sheet_from_run(request: Request, run_id: str) -> SheetInfo:
        return w.wb.get_sheet(w.wb.sheet_from_run(run_id, owner=_viewer(request)))

    @router.post("/api/sheets/{sheet_id}/share", dependencies=csrf)
    async def share(request: Request, sheet_id: str, body: ShareSheet) -> SheetInfo:
        w.wb.share_sheet(sheet_id, _viewer(request), body.with_)
        return w.wb.get_sheet(sheet_id)

    @router.post("/api/sheets", dependencies=csrf)
    async def upload(request: Request, filename: str = Query(min_length=1)) -> SheetInfo:
        settings = SheetSettings.model_validate(json.loads(request.headers.get("x-settings", "{}")))
        suffix = Path(filename).suffix.lower()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            await _save_upload(request, path)
            records = read_records(path)
        sheet_id = w.wb.create_sheet(Path(filename).name, records, settings, _viewer(request))
        return w.wb.get_sheet(sheet_id)

    @router.get("/sheets/{sheet_id}", response_class=HTMLResponse, include_in_schema=False)
    async def sheet_page(request: Request, sheet_id: str) -> HTMLResponse:
        sheet = w.wb.get_sheet(sheet_id)
        page = grid_page(w.wb, sheet, 0, _PAGE_ROWS)
        return w.render(
            request,
            "sheet.html",
            sheet=sheet,
            page=page,
            progress=w.jobs.progress(w.wb, sheet),
            models=w.model_choices(),
            categories=_categories(w.wb, sheet),
        )

    @router.get("/api/sheets/{sheet_id}")
    async def get_sheet(sheet_id: str) -> SheetInfo:
        return w.wb.get_sheet(sheet_id)

    @router.post("/api/sheets/{sheet_id}/settings", dependencies=csrf)
    async def settings(request: Request, sheet_id: str, body: SheetSettings) -> SheetInfo:
        if body.judge_model:
            w.check_model(request, body.judge_model, "judge model")
        if "columns" not in body.model_fields_set:  # the form leaves columns' own settings be
            body.columns = w.wb.get_sheet(sheet_id).settings.columns
        await w.jobs.stop(sheet_id)
        w.wb.update_settings(sheet_id, body)
        return w.wb.get_sheet(sheet_id)

    @router.post("/api/sheets/{sheet_id}/columns", dependencies=csrf)
    async def add_column(request: Request, sheet_id: str, body: AddColumn) -> SheetInfo:
        # a spec from the page picks among the operator's models before it is resolved
        if body.kind in ("model", "pairwise"):
            w.check_model(request, body.spec)
        if body.judge_model:
            w.check_model(request, body.judge_model, "judge model")
        if body.kind == "model":
            w.context.resolve(body.spec)  # an unknown model fails here, not in the job
        elif body.kind == "scorer":
            from llmpick.evaluate.scoring import parse_scorers

            for scorer in parse_scorers([body.spec]):
                w.capabilities.check_scorer(scorer)
        own = body.settings if body.settings is not None and not body.settings.is_empty() else None
        if own is not None and body.kind != "model":
            raise HTTPException(400, "only model columns have their own template and sampling")
        if own is not None and own.template:
            w.wb.column_prompts(sheet_id, own.template)  # a bad template fails here
        if body.judge_model:
            w.context.resolve(body.judge_model)
        await w.jobs.stop(sheet_id)
        w.wb.add_column(sheet_id, body.kind, body.spec)
        if own is not None or body.judge_model:
            settings = w.wb.get_sheet(sheet_id).settings
            if own is not None:
                settings.columns[body.spec] = own
            settings.judge_model = body.judge_model or settings.judge_model
            w.wb.update_settings(sheet_id, settings)
        sheet = w.wb.get_sheet(sheet_id)
        w.start_job(request, sheet)
        return sheet

    @router.post("/api/sheets/{sheet_id}/run", dependencies=csrf)
    async def run(request: Request, sheet_id: str) -> Progress:
        sheet = w.wb.get_sheet(sheet_id)
        w.start_job(request, sheet)
        return w.jobs.progress(w.wb, sheet)

    @router.post("/api/sheets/{sheet_id}/stop", dependencies=csrf)
    async def stop(sheet_id: str) -> Progress:
        await w.jobs.stop(sheet_id)
        return w.jobs.progress(w.wb, w.wb.get_sheet(sheet_id))

    @router.get("/api/sheets/{sheet_id}/progress")
    async def progress(sheet_id: str) -> Progress:
        return w.jobs.progress(w.wb, w.wb.get_sheet(sheet_id))

    @router.get("/api/sheets/{sheet_id}/grid")
    async def grid(
        sheet_id: str,
        f: Annotated[GridFilter, Depends(_grid_filter)],
        offset: int = 0,
        limit: int = _PAGE_ROWS,
    ) -> Any:
        return grid_page(w.wb, w.wb.get_sheet(sheet_id), offset, limit, f)

    @router.get("/api/sheets/{sheet_id}/summary")
    async def summary(sheet_id: str) -> SummaryView:
        sheet = w.wb.get_sheet(sheet_id)
        result = await w.summary(sheet.run_id) if sheet.run_id else None
        return SummaryView(sheet_id=sheet_id, result=result)

    @router.get("/sheets/{sheet_id}/vote", response_class=HTMLResponse, include_in_schema=False)
    async def vote_page(request: Request, sheet_id: str) -> HTMLResponse:
        sheet = w.wb.get_sheet(sheet_id)
        return w.render(
            request,
            "vote.html",
            sheet=sheet,
            task=next_vote(w.wb, sheet, _voter(request), w.rng),
            ranking=human_ranking(w.wb, sheet),
        )

    @router.post("/api/sheets/{sheet_id}/votes/next", dependencies=csrf)
    async def vote_next(request: Request, sheet_id: str) -> VoteTask | None:
        return next_vote(w.wb, w.wb.get_sheet(sheet_id), _voter(request), w.rng)

    @router.post("/api/votes/{vote_id}", dependencies=csrf)
    async def vote(request: Request, vote_id: str, body: VoteCast) -> VoteResult:
        return cast_vote(w.wb, vote_id, body.verdict, _voter(request))

    @router.get("/api/sheets/{sheet_id}/ranking")
    async def ranking(sheet_id: str) -> HumanRanking:
        return human_ranking(w.wb, w.wb.get_sheet(sheet_id))

    add_export_routes(router, w)
    return router


async def _save_upload(request: Request, path: Path) -> None:
    """Stream the body to ``path``, 413 past :data:`MAX_UPLOAD_BYTES` (never held whole)."""
    size = 0
    with path.open("wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise HTTPException(413, f"the file is larger than {MAX_UPLOAD_BYTES} bytes")
            f.write(chunk)


def _categories(wb: WorkbenchStore, sheet: SheetInfo) -> list[str]:
    if sheet.run_id is None:
        return []
    return [
        r[0]
        for r in wb.db.execute(
            "SELECT DISTINCT category FROM run_rows WHERE run_id = ? AND category IS NOT NULL"
            " ORDER BY category",
            (sheet.run_id,),
        )
    ]


def _login(w: Workbench) -> Any:
    """Require an API key on every route when keys are configured.

    The key comes as ``Authorization: Bearer KEY`` or in the ``llmpick_key`` cookie.
    """

    async def check(request: Request) -> None:
        if w.key_check is None:
            request.state.llmpick_admission = await _admission(w, None)
            return
        if w.keys_required is not None and not await w.keys_required():
            request.state.llmpick_admission = await _admission(w, None)
            if not is_loopback(request.client.host if request.client else None):
                raise HTTPException(
                    403,
                    "no API key exists yet, so the workbench answers only this machine:"
                    " create one with 'llmpick keys create --name NAME' and log in with it",
                )
            return
        header = request.headers.get("authorization", "")
        key = header[7:] if header.lower().startswith("bearer ") else None
        key = key or request.cookies.get("llmpick_key")
        user = await key_owner(w.key_check, key) if key else None
        if user is None:
            if request.method == "GET" and "/api/" not in request.url.path:
                raise HTTPException(303, "log in", headers={"location": f"{w.prefix}/login"})
            raise HTTPException(401, "log in with an API key")
        request.state.llmpick_user = user
        request.state.llmpick_admission = await _admission(w, key)

    return check


async def _admission(w: Workbench, key: str | None) -> Admission | None:
    return await w.admission(key) if w.admission is not None else None


def _error_handlers(app: FastAPI, prefix: str) -> None:
    """The workbench's error answers under ``prefix``; the app's own everywhere else.

    On the gateway, ``/v1`` keeps its OpenAI-shaped errors, while the pages keep
    their redirects (an ``HTTPException`` with headers) and short JSON errors.
    """
    before = dict(app.exception_handlers)

    def ours(request: Request) -> bool:
        path = request.url.path
        return not prefix or path == prefix or path.startswith(prefix + "/")

    def handler(kind: type[Exception], answer: Any) -> None:
        other = before.get(kind)

        async def handle(request: Request, exc: Exception) -> Response:
            if ours(request) or other is None:
                return await answer(request, exc)
            return await other(request, exc)

        app.add_exception_handler(kind, handle)

    async def library_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LlmpickError)
        return JSONResponse(
            {"schema_version": SCHEMA_VERSION, "error": exc.one_line()}, status_code=400
        )

    handler(LlmpickError, library_error)
    handler(StarletteHTTPException, http_exception_handler)
    handler(RequestValidationError, request_validation_exception_handler)


def login_router(workbench: Workbench) -> APIRouter:
    """What needs no login: the vendored static files, and ``/login``.

    A key typed in the login page becomes an HttpOnly, SameSite=Strict cookie.
    """
    w = workbench
    router = APIRouter(
        route_class=OrjsonRoute,
    )

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        path = _STATIC / name
        if "/" in name or path.suffix not in _STATIC_TYPES or not path.is_file():
            raise HTTPException(404, "not found")
        return Response(path.read_bytes(), media_type=_STATIC_TYPES[path.suffix])

    @router.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request) -> HTMLResponse:
        if w.key_check is None:
            raise HTTPException(404, "this workbench has no login: it is open")
        return w.render(request, "login.html")

    @router.post("/api/login", dependencies=[Depends(require_csrf)], include_in_schema=False)
    async def login(request: Request) -> JSONResponse:
        key = (await request.body()).decode("utf-8", "replace").strip()
        user = await key_owner(w.key_check, key) if w.key_check is not None and key else None
        if user is None:
            raise HTTPException(401, "that key is not valid")
        response = JSONResponse({"schema_version": SCHEMA_VERSION, "user": user})
        response.set_cookie("llmpick_key", key, httponly=True, samesite="strict", path="/")
        return response

    return router


def mount_workbench(app: FastAPI, workbench: Workbench) -> None:
    """Add the workbench's routes to ``app`` under ``workbench.prefix``."""
    app.include_router(login_router(workbench), prefix=workbench.prefix)
    app.include_router(workbench_router(workbench), prefix=workbench.prefix)
    _error_handlers(app, workbench.prefix)


def create_ui_app(
    context: Context | None = None,
    db_path: Path | str = DEFAULT_DB,
    key_check: KeyCheck | None = None,
    keys_required: KeysRequired | None = None,
    *,
    host: str = "127.0.0.1",
    allowed_hosts: list[str] | None = None,
    allow_any_model: bool = False,
) -> FastAPI:
    """The standalone workbench app of ``llmpick ui`` (see :class:`Workbench`).

    ``host`` (the bound address) and ``allowed_hosts`` are the names ``Host`` may
    carry (:mod:`llmpick.hostcheck`); every body is limited while read.
    """
    if context is None:
        context = Context()
    workbench = Workbench(
        context,
        db_path,
        key_check=key_check,
        keys_required=keys_required,
        allow_any_model=allow_any_model,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await workbench.aclose()

    app = FastAPI(title="llmpick workbench", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.workbench = workbench
    mount_workbench(app, workbench)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_JSON_BYTES, larger=workbench.larger_bodies())
    app.add_middleware(HostCheck, policy=HostPolicy(host, allowed_hosts or ()))
    return app
