"""The audit log: every desk and CLI action, newest first."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from relaywarden.web.deps import (
    SINCE_CHOICES,
    DeskDep,
    PagesDep,
    Viewer,
    since,
    since_seconds,
)

router = APIRouter()


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(
    s: Viewer,
    desk: DeskDep,
    pages: PagesDep,
    since_choice: Annotated[str, Query(alias="since")] = "",
) -> Response:
    return pages.render(
        "audit.html",
        s,
        entries=desk.audit(since(since_choice)),
        since=since_choice,
        since_choices=SINCE_CHOICES,
    )


@router.get("/api/audit")
def api_audit(
    s: Viewer,
    desk: DeskDep,
    since_s: Annotated[float, Query(alias="since_seconds", ge=0, le=10**9)] = 0,
) -> list[dict[str, Any]]:
    return [asdict(e) for e in desk.audit(since_seconds(since_s))]
