"""The web page and JSON API of the desk (FastAPI, Jinja2 with autoescaping, no JS).

Every route but /login and /static needs a session; every POST needs the
session's CSRF token (form field `csrf`, or header X-CSRF-Token for the API);
actions need the operator role. The strict CSP forbids inline script outright.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Form, Header, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from pydantic import BaseModel, Field
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from relaywarden.desk.index import Entry
from relaywarden.desk.postfix import PostfixError, QueueIdError
from relaywarden.desk.service import ActionResult, Desk, DeskError
from relaywarden.errors import StoreError
from relaywarden.policy.desk import WebSection
from relaywarden.policy.durations import parse_duration
from relaywarden.subjects import SubjectError, parse_subject
from relaywarden.web.auth import LOGIN_COOKIE, SESSION_COOKIE, Auth, WebSession, same
from relaywarden.web.chart import bars

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SINCE_CHOICES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "": 0}


class LoginRequired(Exception):
    pass


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response


# -- API bodies ---------------------------------------------------------------
class ActionBody(BaseModel):
    reason: str = Field(default="", max_length=200)
    relay: str | None = Field(default=None, max_length=253)


class BulkBody(BaseModel):
    action: Literal["release", "delete"]
    vps: str | None = Field(default=None, max_length=64)
    customer: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="", max_length=200)


class BlockBody(BaseModel):
    subject: str = Field(max_length=400)
    reason: str = Field(min_length=1, max_length=200)
    duration: str | None = Field(
        default=None, max_length=20, description="e.g. 2h; none = until lifted"
    )
    action: Literal["reject", "tempfail", "quarantine", "discard"] = "reject"


class UnblockBody(BaseModel):
    subject: str = Field(max_length=400)
    reason: str = Field(default="", max_length=200)


# -- who is asking (module level: FastAPI resolves these annotations by name) ----
def session(request: Request) -> WebSession:
    auth: Auth = request.app.state.auth
    found = auth.session(request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise LoginRequired()
    return found


Viewer = Annotated[WebSession, Depends(session)]


def operator(s: Viewer) -> WebSession:
    if not s.operator:
        raise HTTPException(403, "only an operator may do this")
    return s


def form_operator(s: Viewer, csrf: Annotated[str, Form()] = "") -> WebSession:
    if not same(csrf, s.csrf):
        raise HTTPException(403, "missing or wrong CSRF token")
    return operator(s)


def api_operator(s: Viewer, x_csrf_token: Annotated[str | None, Header()] = None) -> WebSession:
    if not same(x_csrf_token, s.csrf):
        raise HTTPException(403, "missing or wrong CSRF token (X-CSRF-Token)")
    return operator(s)


Operator = Annotated[WebSession, Depends(form_operator)]
ApiOperator = Annotated[WebSession, Depends(api_operator)]


def create_app(desk: Desk, cfg: WebSection) -> FastAPI:
    auth = Auth(desk.store, cfg)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    env.globals["when"] = lambda t: (
        time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t)) if t else "-"
    )
    app = FastAPI(
        title="RelayWarden desk",
        version="1",
        docs_url=None,  # the interactive docs load script from a CDN: not under this CSP
        redoc_url=None,
        openapi_url=None,
    )
    app.state.auth = auth
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(name: str, session: WebSession | None, code: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(name).render(session=session, **ctx)
        return HTMLResponse(html, status_code=code)

    # -- errors -------------------------------------------------------------
    def _api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if _api(request):
            return JSONResponse({"detail": "login required"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    def _error(request: Request, status: int, text: str) -> Response:
        if _api(request):
            return JSONResponse({"detail": text}, status_code=status)
        return page("error.html", None, status, message=text)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(QueueIdError)
    @app.exception_handler(SubjectError)
    async def _bad(request: Request, exc: Exception) -> Response:
        return _error(request, 400, str(exc))

    @app.exception_handler(DeskError)
    async def _missing(request: Request, exc: Exception) -> Response:
        return _error(request, 404, str(exc))

    @app.exception_handler(StoreError)
    @app.exception_handler(PostfixError)
    async def _down(request: Request, exc: Exception) -> Response:
        # The detail stays in the server log; the page only says what failed.
        return _error(request, 503, "a backend (Redis or Postfix) is not answering")

    # -- login ----------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form() -> Response:
        token = secrets.token_urlsafe(24)
        response = page("login.html", None, login_csrf=token)
        _cookie(response, LOGIN_COOKIE, token, 600)
        return response

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        if not same(csrf, request.cookies.get(LOGIN_COOKIE)):
            raise HTTPException(403, "missing or wrong CSRF token")
        client = request.client.host if request.client else "?"
        if auth.throttled(username, client):
            return page(
                "login.html",
                None,
                429,
                error="Too many failed logins; wait and retry.",
                login_csrf=csrf,
            )
        token = auth.login(username, password, client)
        if token is None:
            return page(
                "login.html", None, 401, error="Wrong user name or password.", login_csrf=csrf
            )
        response = RedirectResponse("/", status_code=303)
        _cookie(response, SESSION_COOKIE, token, int(cfg.session_lifetime))
        response.delete_cookie(LOGIN_COOKIE)
        return response

    def _cookie(response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=cfg.secure_cookie,
            path="/",
        )

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, s: Viewer, csrf: Annotated[str, Form()] = "") -> Response:
        if not same(csrf, s.csrf):
            raise HTTPException(403, "missing or wrong CSRF token")
        auth.logout(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # -- pages --------------------------------------------------------------
    def _since(text: str) -> float:
        return time.time() - SINCE_CHOICES[text] if SINCE_CHOICES.get(text) else 0.0

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def list_page(
        s: Viewer,
        customer: str = "",
        vps: str = "",
        finding: str = "",
        since: str = "",
        q: Annotated[str, Query(max_length=200)] = "",
    ) -> Response:
        entries = desk.entries(
            customer=customer or None,
            vps=vps or None,
            finding=finding or None,
            since=_since(since),
            search=q or None,
        )
        filters = {"customer": customer, "vps": vps, "finding": finding, "since": since, "q": q}
        return page("list.html", s, entries=entries, filters=filters, since_choices=SINCE_CHOICES)

    @app.get("/message/{queue_id}", response_class=HTMLResponse, include_in_schema=False)
    def message_page(s: Viewer, queue_id: str, relay: str | None = None) -> Response:
        view = desk.show(queue_id, relay or None)
        return page("message.html", s, view=view, e=view.entry, chart=bars(view.status.per_hour))

    @app.post("/message/{queue_id}/{action}", include_in_schema=False)
    def message_action(
        s: Operator,
        queue_id: str,
        action: Literal["release", "delete"],
        reason: Annotated[str, Form(max_length=200)] = "",
        relay: Annotated[str, Form(max_length=253)] = "",
    ) -> Response:
        entry = desk.find(queue_id, relay or None)
        _do(action, entry, s, reason)
        return RedirectResponse(f"/message/{entry.queue_id}", status_code=303)

    def _do(action: str, entry: Entry, s: WebSession, reason: str) -> ActionResult:
        act = desk.release if action == "release" else desk.delete
        return act(entry, actor=s.user, reason=reason, via="web")

    @app.post("/bulk", include_in_schema=False)
    def bulk_page(
        s: Operator,
        action: Annotated[Literal["release", "delete"], Form()],
        vps: Annotated[str, Form(max_length=64)] = "",
        confirm: Annotated[str, Form()] = "",
        reason: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        if confirm != "yes":
            raise HTTPException(400, "tick the confirmation box for a bulk action")
        for entry in desk.held_for(vps=vps or None):
            _do(action, entry, s, reason)
        return RedirectResponse("/", status_code=303)

    @app.get("/blocks", response_class=HTMLResponse, include_in_schema=False)
    def blocks_page(s: Viewer) -> Response:
        return page("blocks.html", s, blocks=desk.blocks())

    @app.post("/blocks", include_in_schema=False)
    def block_page(
        s: Operator,
        subject: Annotated[str, Form(max_length=400)],
        reason: Annotated[str, Form(min_length=1, max_length=200)],
        duration: Annotated[str, Form(max_length=20)] = "",
        action: Annotated[
            Literal["reject", "tempfail", "quarantine", "discard"], Form()
        ] = "reject",
    ) -> Response:
        _block(
            s, BlockBody(subject=subject, reason=reason, duration=duration or None, action=action)
        )
        return RedirectResponse("/blocks", status_code=303)

    @app.post("/blocks/lift", include_in_schema=False)
    def lift_page(
        s: Operator,
        subject: Annotated[str, Form(max_length=400)],
        reason: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        desk.unblock(parse_subject(subject), actor=s.user, reason=reason, via="web")
        return RedirectResponse("/blocks", status_code=303)

    def _block(s: WebSession, body: BlockBody) -> dict[str, Any]:
        try:
            duration = parse_duration(body.duration) if body.duration else None
            record = desk.block(
                parse_subject(body.subject),
                actor=s.user,
                reason=body.reason,
                duration=duration,
                action=body.action,
                via="web",
            )
        except SubjectError:
            raise
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return asdict(record)

    @app.get("/status", response_class=HTMLResponse, include_in_schema=False)
    def status_page(s: Viewer, subject: Annotated[str, Query(max_length=400)] = "") -> Response:
        status = desk.subject_status(parse_subject(subject)) if subject else None
        chart = bars(status.per_hour) if status else None
        return page("status.html", s, subject=subject, status=status, chart=chart)

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(s: Viewer, since: str = "") -> Response:
        return page(
            "audit.html",
            s,
            entries=desk.audit(_since(since)),
            since=since,
            since_choices=SINCE_CHOICES,
        )

    # -- JSON API ---------------------------------------------------------------
    @app.get("/api/quarantine")
    def api_list(
        s: Viewer,
        customer: Annotated[str | None, Query(max_length=64)] = None,
        vps: Annotated[str | None, Query(max_length=64)] = None,
        finding: Annotated[str | None, Query(max_length=100)] = None,
        since_seconds: Annotated[float, Query(ge=0, le=10**9)] = 0,
        q: Annotated[str | None, Query(max_length=200)] = None,
    ) -> list[dict[str, Any]]:
        since = time.time() - since_seconds if since_seconds else 0.0
        entries = desk.entries(customer=customer, vps=vps, finding=finding, since=since, search=q)
        return [e.as_dict() for e in entries]

    @app.get("/api/quarantine/{queue_id}")
    def api_show(s: Viewer, queue_id: str, relay: str | None = None) -> dict[str, Any]:
        view = desk.show(queue_id, relay)
        return {
            "entry": view.entry.as_dict(),
            "headers": view.preview.headers if view.preview else [],
            "preview": view.preview.text if view.preview else None,
            "preview_note": view.preview_note,
            "status": asdict(view.status),
        }

    @app.post("/api/quarantine/{queue_id}/{action}")
    def api_action(
        s: ApiOperator, queue_id: str, action: Literal["release", "delete"], body: ActionBody
    ) -> dict[str, Any]:
        return asdict(_do(action, desk.find(queue_id, body.relay), s, body.reason))

    @app.post("/api/bulk")
    def api_bulk(s: ApiOperator, body: BulkBody) -> list[dict[str, Any]]:
        entries = desk.held_for(vps=body.vps, customer=body.customer)
        return [asdict(_do(body.action, e, s, body.reason)) for e in entries]

    @app.get("/api/blocks")
    def api_blocks(s: Viewer) -> list[dict[str, Any]]:
        return [asdict(b) for b in desk.blocks()]

    @app.post("/api/blocks")
    def api_block(s: ApiOperator, body: BlockBody) -> dict[str, Any]:
        return _block(s, body)

    @app.post("/api/blocks/lift")
    def api_unblock(s: ApiOperator, body: UnblockBody) -> dict[str, bool]:
        removed = desk.unblock(
            parse_subject(body.subject), actor=s.user, reason=body.reason, via="web"
        )
        return {"was_blocked": removed}

    @app.get("/api/status")
    def api_status(s: Viewer, subject: Annotated[str, Query(max_length=400)]) -> dict[str, Any]:
        return asdict(desk.subject_status(parse_subject(subject)))

    @app.get("/api/audit")
    def api_audit(
        s: Viewer, since_seconds: Annotated[float, Query(ge=0, le=10**9)] = 0
    ) -> list[dict[str, Any]]:
        since = time.time() - since_seconds if since_seconds else 0.0
        return [asdict(e) for e in desk.audit(since)]

    @app.get("/api/openapi.json", include_in_schema=False)
    def api_schema(s: Viewer) -> dict[str, Any]:
        return app.openapi()

    return app
