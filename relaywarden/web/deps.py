"""What every page group of the desk shares: who is asking, the templates, cookies.

Routers in `routes/` take these as FastAPI dependencies; the objects behind them
(the Desk, the Auth, the Pages) live on `app.state`, set once by `create_app`.
Module level on purpose: FastAPI resolves the `Annotated` aliases by name.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Form, Header, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader

from relaywarden.desk.service import Desk
from relaywarden.policy.desk import WebSection
from relaywarden.web.auth import Auth, WebSession, same
from relaywarden.web.guard import who

HERE = Path(__file__).parent
SINCE_CHOICES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "": 0}


class LoginRequired(Exception):
    """No valid session: pages redirect to /login, the API answers 401."""


class Pages:
    """The Jinja2 templates (autoescaping on) and the navigation every page shows."""

    def __init__(self, nav: list[tuple[str, str]]):
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
        self.env.globals["when"] = lambda t: (
            time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t)) if t else "-"
        )
        self.env.globals["nav"] = nav

    def render(
        self, name: str, session: WebSession | None, code: int = 200, **ctx: Any
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(session=session, **ctx)
        return HTMLResponse(html, status_code=code)


# -- the objects create_app put on app.state ------------------------------------
def get_desk(request: Request) -> Desk:
    desk: Desk = request.app.state.desk
    return desk


def get_auth(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


def get_pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


def get_web(request: Request) -> WebSection:
    cfg: WebSection = request.app.state.web
    return cfg


DeskDep = Annotated[Desk, Depends(get_desk)]
AuthDep = Annotated[Auth, Depends(get_auth)]
PagesDep = Annotated[Pages, Depends(get_pages)]
WebDep = Annotated[WebSection, Depends(get_web)]


# -- who is asking ----------------------------------------------------------------
def session(request: Request, auth: AuthDep) -> WebSession:
    # The guard has already looked for requests with a body; others look here.
    found: WebSession | None = request.scope.get("state", {}).get("rw_session")
    if found is None:
        found = who(auth, dict(request.cookies), dict(request.headers))
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
    # A service account's bearer token is not sent by browsers on their own, so
    # it needs no CSRF token; a cookie session does.
    if s.via != "api" and not same(x_csrf_token, s.csrf):
        raise HTTPException(403, "missing or wrong CSRF token (X-CSRF-Token)")
    return operator(s)


Operator = Annotated[WebSession, Depends(form_operator)]  # HTML forms: field `csrf`
ApiOperator = Annotated[WebSession, Depends(api_operator)]  # JSON API: X-CSRF-Token


# -- small shared helpers -------------------------------------------------------
def set_cookie(response: Response, cfg: WebSection, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=cfg.secure_cookie,
        path="/",
    )


def since(text: str) -> float:
    """The start time for a `since` choice of the pages ("" = everything)."""
    return time.time() - SINCE_CHOICES[text] if SINCE_CHOICES.get(text) else 0.0


def since_seconds(seconds: float) -> float:
    """The start time for the API's `since_seconds` (0 = everything)."""
    return time.time() - seconds if seconds else 0.0
