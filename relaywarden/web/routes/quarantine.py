"""Held messages: the list with its filters, one message, release/delete, bulk actions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from relaywarden.desk.index import Entry
from relaywarden.desk.service import ActionResult, Desk
from relaywarden.web.auth import WebSession
from relaywarden.web.chart import bars
from relaywarden.web.deps import (
    SINCE_CHOICES,
    ApiOperator,
    DeskDep,
    Operator,
    PagesDep,
    Viewer,
    since,
    since_seconds,
)

router = APIRouter()


class ActionBody(BaseModel):
    reason: str = Field(default="", max_length=200)
    relay: str | None = Field(default=None, max_length=253)


class BulkBody(BaseModel):
    action: Literal["release", "delete"]
    vps: str | None = Field(default=None, max_length=64)
    customer: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="", max_length=200)


def _do(desk: Desk, action: str, entry: Entry, s: WebSession, reason: str) -> ActionResult:
    act = desk.release if action == "release" else desk.delete
    return act(entry, actor=s.user, reason=reason, via=s.via)


# -- pages ------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def list_page(
    s: Viewer,
    desk: DeskDep,
    pages: PagesDep,
    customer: str = "",
    vps: str = "",
    finding: str = "",
    since_choice: Annotated[str, Query(alias="since")] = "",
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    entries = desk.entries(
        customer=customer or None,
        vps=vps or None,
        finding=finding or None,
        since=since(since_choice),
        search=q or None,
    )
    filters = {
        "customer": customer,
        "vps": vps,
        "finding": finding,
        "since": since_choice,
        "q": q,
    }
    return pages.render(
        "list.html", s, entries=entries, filters=filters, since_choices=SINCE_CHOICES
    )


@router.get("/message/{queue_id}", response_class=HTMLResponse, include_in_schema=False)
def message_page(
    s: Viewer, desk: DeskDep, pages: PagesDep, queue_id: str, relay: str | None = None
) -> Response:
    view = desk.show(queue_id, relay or None)
    return pages.render(
        "message.html", s, view=view, e=view.entry, chart=bars(view.status.per_hour)
    )


@router.post("/message/{queue_id}/{action}", include_in_schema=False)
def message_action(
    s: Operator,
    desk: DeskDep,
    queue_id: str,
    action: Literal["release", "delete"],
    reason: Annotated[str, Form(max_length=200)] = "",
    relay: Annotated[str, Form(max_length=253)] = "",
) -> Response:
    entry = desk.find(queue_id, relay or None)
    _do(desk, action, entry, s, reason)
    return RedirectResponse(f"/message/{entry.queue_id}", status_code=303)


@router.post("/bulk", include_in_schema=False)
def bulk_page(
    s: Operator,
    desk: DeskDep,
    action: Annotated[Literal["release", "delete"], Form()],
    vps: Annotated[str, Form(max_length=64)] = "",
    confirm: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if confirm != "yes":
        raise HTTPException(400, "tick the confirmation box for a bulk action")
    for entry in desk.held_for(vps=vps or None):
        _do(desk, action, entry, s, reason)
    return RedirectResponse("/", status_code=303)


# -- JSON API ---------------------------------------------------------------------
@router.get("/api/quarantine")
def api_list(
    s: Viewer,
    desk: DeskDep,
    customer: Annotated[str | None, Query(max_length=64)] = None,
    vps: Annotated[str | None, Query(max_length=64)] = None,
    finding: Annotated[str | None, Query(max_length=100)] = None,
    since_s: Annotated[float, Query(alias="since_seconds", ge=0, le=10**9)] = 0,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    entries = desk.entries(
        customer=customer, vps=vps, finding=finding, since=since_seconds(since_s), search=q
    )
    return [e.as_dict() for e in entries]


@router.get("/api/quarantine/{queue_id}")
def api_show(s: Viewer, desk: DeskDep, queue_id: str, relay: str | None = None) -> dict[str, Any]:
    view = desk.show(queue_id, relay)
    return {
        "entry": view.entry.as_dict(),
        "headers": view.preview.headers if view.preview else [],
        "preview": view.preview.text if view.preview else None,
        "parts": [asdict(p) for p in view.preview.parts] if view.preview else [],
        "attachments": [asdict(a) for a in view.preview.attachments] if view.preview else [],
        "preview_notes": view.preview.notes if view.preview else [],
        "preview_note": view.preview_note,
        "status": asdict(view.status),
    }


@router.post("/api/quarantine/{queue_id}/{action}")
def api_action(
    s: ApiOperator,
    desk: DeskDep,
    queue_id: str,
    action: Literal["release", "delete"],
    body: ActionBody,
) -> dict[str, Any]:
    return asdict(_do(desk, action, desk.find(queue_id, body.relay), s, body.reason))


@router.post("/api/bulk")
def api_bulk(s: ApiOperator, desk: DeskDep, body: BulkBody) -> list[dict[str, Any]]:
    entries = desk.held_for(vps=body.vps, customer=body.customer)
    return [asdict(_do(desk, body.action, e, s, body.reason)) for e in entries]
