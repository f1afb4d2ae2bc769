"""The desk's outermost layer (plain ASGI): what every request goes through first.

- the Host header must be one the desk answers to (`[web] allowed_hosts`);
- a request with a body must come with a session (or an API token) *before* the
  body is read, except the login form; a stranger's upload is refused unread;
- a body larger than `[web] max_body` is refused (413), by Content-Length up
  front and by counting while it streams;
- every response, error pages and internal errors (500) included, carries the
  security headers; an exception's text goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relaywarden.web.auth import SESSION_COOKIE, Auth, WebSession

log = logging.getLogger("relaywarden.web")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
# Paths whose body may be sent without a session (and the login form's is small).
OPEN_POSTS = {"/login": 8192}
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class BodyTooLarge(Exception):
    pass


def bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def who(auth: Auth, cookies: dict[str, str], headers: dict[str, str]) -> WebSession | None:
    """The session of a request: an API token first, else the session cookie."""
    token = bearer(headers)
    if token is not None:
        return auth.token_session(token)
    return auth.session(cookies.get(SESSION_COOKIE))


class DeskGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        started = False
        over_limit = False  # set when the body passed the limit while streaming

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over_limit:
                # Whatever the app made of a cut-off body (FastAPI: 400), the answer is 413.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _error(scope, 413, "request body too large")(scope, receive, send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        def hit_limit() -> None:
            nonlocal over_limit
            over_limit = True

        try:
            refusal = await self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            await self.app(scope, _limited(scope, receive, hit_limit), guarded_send)
        except BodyTooLarge:
            if not started:
                started = True
                await _error(scope, 413, "request body too large")(scope, receive, send)
        except Exception:
            log.exception("desk request %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _error(scope, 500, "internal error; see the desk's log")(scope, receive, send)

    async def _refusal(self, scope: Scope) -> Response | None:
        request = Request(scope)
        state: Any = scope["app"].state
        host = (request.headers.get("host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.strip("[]") not in state.web.hosts:
            return PlainTextResponse("unknown Host", status_code=400)
        path = scope["path"]
        if scope["method"] not in BODY_METHODS:
            return None
        limit = OPEN_POSTS.get(path, state.web.max_body)
        scope["rw_body_limit"] = limit
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return _error(scope, 413, "request body too large")
        if path in OPEN_POSTS:
            return None
        found = await anyio.to_thread.run_sync(
            who, state.auth, dict(request.cookies), dict(request.headers)
        )
        if found is None:
            if path.startswith("/api/"):
                return JSONResponse({"detail": "login required"}, status_code=401)
            return RedirectResponse("/login", status_code=303)
        scope.setdefault("state", {})["rw_session"] = found
        return None


def _limited(scope: Scope, receive: Receive, hit_limit: Callable[[], None]) -> Receive:
    limit = scope.get("rw_body_limit")
    if limit is None:
        return receive
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                hit_limit()
                raise BodyTooLarge()
        return message

    return counted


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v)
                for k, v in message.get("headers", [])
                if k.decode("latin-1").lower() not in SECURITY_HEADERS
            ]
            headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
            if not any(k.lower() == b"cache-control" for k, _ in headers):
                headers.append((b"cache-control", b"no-store"))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _error(scope: Scope, status: int, text: str) -> Response:
    if scope["path"].startswith("/api/"):
        return JSONResponse({"detail": text}, status_code=status)
    pages = scope["app"].state.pages
    response: Response = pages.render("error.html", None, status, message=text)
    return response
