"""Logging in and out: the login form with its pre-session CSRF cookie, the throttle."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from relaywarden.web.auth import LOGIN_COOKIE, SESSION_COOKIE, LoginResult, client_address, same
from relaywarden.web.deps import AuthDep, PagesDep, Viewer, WebDep, set_cookie

router = APIRouter(include_in_schema=False)

REFUSED = {
    LoginResult.WRONG: (401, "Wrong user name or password."),
    LoginResult.THROTTLED: (429, "Too many login attempts; wait and retry."),
    LoginResult.BUSY: (503, "The desk is busy checking passwords; retry in a moment."),
}


@router.get("/login", response_class=HTMLResponse)
def login_form(pages: PagesDep, cfg: WebDep) -> Response:
    token = secrets.token_urlsafe(24)
    response = pages.render("login.html", None, login_csrf=token)
    set_cookie(response, cfg, LOGIN_COOKIE, token, 600)
    return response


@router.post("/login")
def login(
    request: Request,
    auth: AuthDep,
    pages: PagesDep,
    cfg: WebDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    if not same(csrf, request.cookies.get(LOGIN_COOKIE)):
        raise HTTPException(403, "missing or wrong CSRF token")
    peer = request.client.host if request.client else None
    client = client_address(peer, request.headers.get("x-forwarded-for"), cfg)
    result, token = auth.login(username, password, client)
    if result is not LoginResult.OK or token is None:
        code, text = REFUSED.get(result, REFUSED[LoginResult.WRONG])
        return pages.render("login.html", None, code, error=text, login_csrf=csrf)
    response = RedirectResponse("/", status_code=303)
    set_cookie(response, cfg, SESSION_COOKIE, token, int(cfg.session_lifetime))
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(
    request: Request, s: Viewer, auth: AuthDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    if not same(csrf, s.csrf):
        raise HTTPException(403, "missing or wrong CSRF token")
    auth.logout(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
