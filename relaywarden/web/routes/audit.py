"""The audit log: every desk and CLI action, newest first, paged and filtered
over the whole stream (by subject or queue id, by user, by action)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from relaywarden.audit import PAGE, AuditFilter
from relaywarden.web.deps import (
    SINCE_CHOICES,
    DeskDep,
    PagesDep,
    Viewer,
    since,
    since_seconds,
)

router = APIRouter()

Text = Annotated[str, Query(max_length=400)]
Cursor = Annotated[str, Query(max_length=45, description="stream id of the last entry seen")]


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(
    s: Viewer,
    desk: DeskDep,
    pages: PagesDep,
    since_choice: Annotated[str, Query(alias="since")] = "",
    subject: Text = "",
    actor: Text = "",
    action: Text = "",
    before: Cursor = "",
) -> Response:
    where = AuditFilter(since(since_choice), actor.strip(), action.strip(), subject.strip())
    found = desk.audit(where, before=before or None)
    filters = {"since": since_choice, "subject": subject, "actor": actor, "action": action}
    older = urlencode({**filters, "before": found.older}) if found.older else ""
    return pages.render(
        "audit.html",
        s,
        entries=found.entries,
        filters=filters,
        since=since_choice,
        since_choices=SINCE_CHOICES,
        older=older,
        paged=bool(before),
    )


@router.get("/api/audit")
def api_audit(
    s: Viewer,
    desk: DeskDep,
    since_s: Annotated[float, Query(alias="since_seconds", ge=0, le=10**9)] = 0,
    subject: Text = "",
    actor: Text = "",
    action: Text = "",
    before: Cursor = "",
    count: Annotated[int, Query(ge=1, le=1000)] = PAGE,
) -> Response:
    """Newest first; the next (older) page is in the Link header (rel="next")."""
    where = AuditFilter(since_seconds(since_s), actor.strip(), action.strip(), subject.strip())
    found = desk.audit(where, before=before or None, count=count)
    body: list[dict[str, Any]] = [asdict(e) for e in found.entries]
    response = JSONResponse(body)
    if found.older:
        query = {
            "since_seconds": since_s,
            "subject": subject,
            "actor": actor,
            "action": action,
            "count": count,
            "before": found.older,
        }
        response.headers["Link"] = f'</api/audit?{urlencode(query)}>; rel="next"'
    return response
