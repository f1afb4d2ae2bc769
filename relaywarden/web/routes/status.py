"""Subject status: decisions per hour, limits and blocks for one VPS/customer/sender."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from relaywarden.subjects import parse_subject
from relaywarden.web.chart import bars
from relaywarden.web.deps import DeskDep, PagesDep, Viewer

router = APIRouter()


@router.get("/status", response_class=HTMLResponse, include_in_schema=False)
def status_page(
    s: Viewer,
    desk: DeskDep,
    pages: PagesDep,
    subject: Annotated[str, Query(max_length=400)] = "",
) -> Response:
    status = desk.subject_status(parse_subject(subject)) if subject else None
    chart = bars(status.per_hour) if status else None
    return pages.render("status.html", s, subject=subject, status=status, chart=chart)


@router.get("/api/status")
def api_status(
    s: Viewer, desk: DeskDep, subject: Annotated[str, Query(max_length=400)]
) -> dict[str, Any]:
    return asdict(desk.subject_status(parse_subject(subject)))
