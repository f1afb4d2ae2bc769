"""Held messages: the list with its filters, one message, release/delete, bulk actions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from relaywarden.desk.index import Entry
from relaywarden.desk.service import MAX_BULK, ActionResult, Desk
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
MAX_SHOWN = 500  # messages one list page shows (and one bulk form may carry)


class ActionBody(BaseModel):
    reason: str = Field(default="", max_length=200)
    relay: str | None = Field(default=None, max_length=253)


class BulkBody(BaseModel):
    """Either `queue_ids` ("relay/queue id", or a queue id held on one relay) or
    everything held for `vps`/`customer`; `expect_count` must equal the number of
    messages that selects, or nothing is done (409)."""

    action: Literal["release", "delete"]
    queue_ids: list[str] = Field(default_factory=list, max_length=MAX_SHOWN)
    vps: str | None = Field(default=None, max_length=64)
    customer: str | None = Field(default=None, max_length=64)
    expect_count: int = Field(ge=1, le=MAX_BULK)
    reason: str = Field(default="", max_length=200)


def _pairs(desk: Desk, ids: list[str]) -> list[tuple[str, str]]:
    out = []
    for text in ids:
        relay, _, qid = text.rpartition("/")
        if not relay:
            relay = desk.find(qid).relay
        out.append((relay[:253], qid))
    return out


def _bulk(desk: Desk, s: WebSession, action: str, entries: list[Entry], expect: int, reason: str
          ) -> list[ActionResult]:  # fmt: skip
    if len(entries) != expect:
        raise HTTPException(
            409,
            f"the selection now holds {len(entries)} message(s), not the {expect} confirmed: "
            "nothing was done; reload the list",
        )
    return [_do(desk, action, e, s, reason) for e in entries]


def _do(desk: Desk, action: str, entry: Entry, s: WebSession, reason: str) -> ActionResult:
    act = desk.release if action == "release" else desk.delete
    return act(entry, actor=s.user, reason=reason, via=s.via)


# -- pages ------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def list_page(
    s: Viewer,
    desk: DeskDep,
    pages: PagesDep,
    customer: Annotated[str, Query(max_length=64)] = "",
    vps: Annotated[str, Query(max_length=64)] = "",
    finding: Annotated[str, Query(max_length=100)] = "",
    since_choice: Annotated[str, Query(alias="since")] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    before: Annotated[float | None, Query(ge=0, le=10**11)] = None,
) -> Response:
    found = desk.select(
        customer=customer or None,
        vps=vps or None,
        finding=finding or None,
        since=since(since_choice),
        search=q or None,
        before=before,
        limit=MAX_SHOWN,
    )
    filters = {
        "customer": customer,
        "vps": vps,
        "finding": finding,
        "since": since_choice,
        "q": q,
    }
    older = urlencode({**filters, "before": repr(found.older)}) if found.older else ""
    held = [e for e in found.entries if e.state == "held" and e.in_hold is not False]
    return pages.render(
        "list.html",
        s,
        entries=found.entries,
        held=held,
        filters=filters,
        since_choices=SINCE_CHOICES,
        older=older,
        paged=before is not None,
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
    ids: Annotated[list[str], Form(max_length=MAX_SHOWN)],
    count: Annotated[int, Form(ge=1, le=MAX_SHOWN)],
    confirm: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Acts on exactly the messages the list showed (their ids travel with the
    form) and only if their number is the one the operator confirmed."""
    if confirm != "yes":
        raise HTTPException(400, "tick the confirmation box for a bulk action")
    if len(ids) != count:
        raise HTTPException(400, "the selection and its confirmed count differ")
    _bulk(desk, s, action, desk.selected(_pairs(desk, ids)), count, reason)
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
    if body.queue_ids:
        entries = desk.selected(_pairs(desk, body.queue_ids))
    else:
        entries = desk.held_for(vps=body.vps, customer=body.customer)
    results = _bulk(desk, s, body.action, entries, body.expect_count, body.reason)
    return [asdict(r) for r in results]
