"""Blocks: the list, a new block (form and API), lifting one."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from relaywarden.desk.service import Desk
from relaywarden.policy.durations import parse_duration
from relaywarden.subjects import SubjectError, parse_subject
from relaywarden.web.auth import WebSession
from relaywarden.web.deps import ApiOperator, DeskDep, Operator, PagesDep, Viewer

router = APIRouter()

BlockAction = Literal["reject", "tempfail", "quarantine", "discard"]


class BlockBody(BaseModel):
    subject: str = Field(max_length=400)
    reason: str = Field(min_length=1, max_length=200)
    duration: str = Field(
        min_length=1,
        max_length=20,
        description="2h, 7d (at most 3650d); 'ever' = until lifted",
    )
    action: BlockAction = "reject"


class UnblockBody(BaseModel):
    subject: str = Field(max_length=400)
    reason: str = Field(default="", max_length=200)


def _block(desk: Desk, s: WebSession, body: BlockBody) -> dict[str, Any]:
    try:
        duration = None if body.duration.strip() == "ever" else parse_duration(body.duration)
        record = desk.block(
            parse_subject(body.subject),
            actor=s.user,
            reason=body.reason,
            duration=duration,
            action=body.action,
            via=s.via,
        )
    except SubjectError:
        raise
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return asdict(record)


# -- pages ------------------------------------------------------------------------
@router.get("/blocks", response_class=HTMLResponse, include_in_schema=False)
def blocks_page(s: Viewer, desk: DeskDep, pages: PagesDep) -> Response:
    return pages.render("blocks.html", s, blocks=desk.blocks(), static=desk.static_blocks())


@router.post("/blocks", include_in_schema=False)
def block_page(
    s: Operator,
    desk: DeskDep,
    subject: Annotated[str, Form(max_length=400)],
    reason: Annotated[str, Form(min_length=1, max_length=200)],
    duration: Annotated[str, Form(min_length=1, max_length=20)],
    action: Annotated[BlockAction, Form()] = "reject",
) -> Response:
    body = BlockBody(subject=subject, reason=reason, duration=duration, action=action)
    _block(desk, s, body)
    return RedirectResponse("/blocks", status_code=303)


@router.post("/blocks/lift", include_in_schema=False)
def lift_page(
    s: Operator,
    desk: DeskDep,
    subject: Annotated[str, Form(max_length=400)],
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    desk.unblock(parse_subject(subject), actor=s.user, reason=reason, via=s.via)
    return RedirectResponse("/blocks", status_code=303)


# -- JSON API ---------------------------------------------------------------------
@router.get("/api/blocks")
def api_blocks(s: Viewer, desk: DeskDep) -> list[dict[str, Any]]:
    """Blocks set from the desk, the CLI or escalation (the policy's own: /api/blocks/static)."""
    return [{**asdict(b), "covers": b.covers} for b in desk.blocks()]


@router.get("/api/blocks/static")
def api_static_blocks(s: Viewer, desk: DeskDep) -> list[dict[str, str]]:
    """The policy file's [[blocks]]: lifted only by editing the policy."""
    return [
        {"subject": str(b.subject), "action": b.action, "reason": b.reason}
        for b in desk.static_blocks()
    ]


@router.post("/api/blocks")
def api_block(s: ApiOperator, desk: DeskDep, body: BlockBody) -> dict[str, Any]:
    return _block(desk, s, body)


@router.post("/api/blocks/lift")
def api_unblock(s: ApiOperator, desk: DeskDep, body: UnblockBody) -> dict[str, bool]:
    removed = desk.unblock(parse_subject(body.subject), actor=s.user, reason=body.reason, via=s.via)
    return {"was_blocked": removed}
