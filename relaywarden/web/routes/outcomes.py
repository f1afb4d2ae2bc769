"""Delivery outcomes, complaints and a login's networks for one VPS, customer or
login, and the complaints kept (attributed or not). Read only: viewers see all."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, Response

from relaywarden.complaints.service import recent
from relaywarden.outcomes.service import subject_outcomes
from relaywarden.policy import Policy
from relaywarden.subjects import Subject, parse_subject
from relaywarden.web.chart import bars
from relaywarden.web.deps import DeskDep, PagesDep, Viewer

router = APIRouter()
complaints_router = APIRouter()  # its own page in the navigation
KINDS = ("vps", "customer", "user")
SHOWN = 50


def _subject(text: str) -> Subject:
    subject = parse_subject(text)
    if subject.kind not in KINDS:
        raise HTTPException(400, "outcomes are kept per vps:, customer: or user:")
    return subject


def _report(desk: Any, subject: Subject) -> dict[str, Any]:
    policy = desk.policy if isinstance(desk.policy, Policy) else Policy()
    return subject_outcomes(desk.store, policy, subject).as_dict()


@router.get("/outcomes", response_class=HTMLResponse, include_in_schema=False)
def outcomes_page(
    s: Viewer,
    desk: DeskDep,
    pages: PagesDep,
    subject: Annotated[str, Query(max_length=400)] = "",
) -> Response:
    report = complaints = charts = None
    if subject:
        target = _subject(subject)
        report = _report(desk, target)
        complaints = recent(desk.store, SHOWN, target)
        charts = {
            kind: bars(report["per_hour"][kind])
            for kind in ("delivered", "deferred", "bounced", "complaints")
        }
    return pages.render(
        "outcomes.html", s, subject=subject, report=report, charts=charts, complaints=complaints
    )


@complaints_router.get("/complaints", response_class=HTMLResponse, include_in_schema=False)
def complaints_page(s: Viewer, desk: DeskDep, pages: PagesDep) -> Response:
    return pages.render("complaints.html", s, complaints=recent(desk.store, 200))


@router.get("/api/outcomes")
def api_outcomes(
    s: Viewer, desk: DeskDep, subject: Annotated[str, Query(max_length=400)]
) -> dict[str, Any]:
    return _report(desk, _subject(subject))


@complaints_router.get("/api/complaints")
def api_complaints(
    s: Viewer,
    desk: DeskDep,
    subject: Annotated[str, Query(max_length=400)] = "",
) -> list[dict[str, Any]]:
    return recent(desk.store, 200, _subject(subject) if subject else None)
