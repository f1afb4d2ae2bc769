"""The desk's web application (FastAPI, Jinja2 with autoescaping, no JS).

Every route but /login and /static needs a session; every POST needs the
session's CSRF token (form field `csrf`, or header X-CSRF-Token for the API);
actions need the operator role. The strict CSP forbids inline script outright.

`create_app` only assembles: the guard (guard.py: Host allow-list, session
before body, body size limit, security headers on every response), the error
pages, and the page
groups of `routes/` (one module each; `routes/__init__.py` says how to add one).
Who is asking, the templates and cookies are shared from `deps.py`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from relaywarden.desk.postfix import PostfixError, QueueIdError
from relaywarden.desk.service import Desk, DeskError
from relaywarden.errors import StoreError
from relaywarden.policy.desk import WebSection
from relaywarden.subjects import SubjectError
from relaywarden.web.auth import Auth
from relaywarden.web.deps import HERE, LoginRequired, Pages, Viewer
from relaywarden.web.guard import CSP as CSP
from relaywarden.web.guard import DeskGuard
from relaywarden.web.routes import PAGE_GROUPS


def create_app(desk: Desk, cfg: WebSection) -> FastAPI:
    app = FastAPI(
        title="RelayWarden desk",
        version="1",
        docs_url=None,  # the interactive docs load script from a CDN: not under this CSP
        redoc_url=None,
        openapi_url=None,
    )
    pages = Pages([g.nav for g in PAGE_GROUPS if g.nav])
    app.state.pages = pages
    use_policy(app, desk, cfg)
    app.add_middleware(DeskGuard)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _error_pages(app, pages)
    for group in PAGE_GROUPS:
        app.include_router(group.router)

    @app.get("/api/openapi.json", include_in_schema=False)
    def api_schema(s: Viewer) -> dict[str, Any]:
        return app.openapi()

    return app


def use_policy(app: FastAPI, desk: Desk, cfg: WebSection) -> None:
    """Serve from `desk` and `cfg` from the next request on (start, and each
    SIGHUP reload: a user removed from the policy is out at once)."""
    auth: Auth | None = getattr(app.state, "auth", None)
    if auth is not None and auth.store is desk.store:
        auth.cfg = cfg  # keep the argon2 bound (its semaphore) across reloads
    else:
        auth = Auth(desk.store, cfg)
    old: Desk | None = getattr(app.state, "desk", None)
    app.state.desk = desk
    app.state.web = cfg
    if old is not None and old is not desk:
        old.close()  # its preview worker process
    app.state.auth = auth


def _error_pages(app: FastAPI, pages: Pages) -> None:
    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def error(request: Request, status: int, text: str) -> Response:
        if is_api(request):
            return JSONResponse({"detail": text}, status_code=status)
        return pages.render("error.html", None, status, message=text)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if is_api(request):
            return JSONResponse({"detail": "login required"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(QueueIdError)
    @app.exception_handler(SubjectError)
    async def _bad(request: Request, exc: Exception) -> Response:
        return error(request, 400, str(exc))

    @app.exception_handler(DeskError)
    async def _missing(request: Request, exc: Exception) -> Response:
        return error(request, 404, str(exc))

    @app.exception_handler(StoreError)
    @app.exception_handler(PostfixError)
    async def _down(request: Request, exc: Exception) -> Response:
        # The detail stays in the server log; the page only says what failed.
        return error(request, 503, "a backend (Redis or Postfix) is not answering")
