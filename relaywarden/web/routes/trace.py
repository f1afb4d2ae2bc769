"""Trace: a trace header's token (from a complaint, a bounce, a forwarded copy)
back to its transaction: relay, queue id, time, customer, VPS, login, decision."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from relaywarden.web.deps import DeskDep, PagesDep, Viewer

router = APIRouter()
Token = Annotated[str, Query(max_length=200)]


@router.get("/trace", response_class=HTMLResponse, include_in_schema=False)
def trace_page(s: Viewer, desk: DeskDep, pages: PagesDep, token: Token = "") -> Response:
    info, record = desk.trace(token) if token else (None, None)
    return pages.render("trace.html", s, token=token, info=info, record=record)


@router.get("/api/trace")
def api_trace(s: Viewer, desk: DeskDep, token: Token) -> dict[str, Any]:
    info, record = desk.trace(token)
    return {**asdict(info), "decision": record}
