"""Campaigns: the same message from many senders; block or release one as a whole."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from relaywarden.content import campaigns
from relaywarden.desk.service import Desk
from relaywarden.web.auth import WebSession
from relaywarden.web.deps import ApiOperator, DeskDep, Operator, PagesDep, Viewer

router = APIRouter()

Verb = Literal["block", "release"]


class CampaignBody(BaseModel):
    campaign: str = Field(max_length=16, pattern=r"^[0-9a-f]{16}$")
    reason: str = Field(default="", max_length=200)


def _act(desk: Desk, s: WebSession, verb: Verb, body: CampaignBody) -> dict[str, Any]:
    window = desk.policy.campaigns.window if desk.policy is not None else 3600.0
    act = campaigns.block if verb == "block" else campaigns.release
    try:
        done = act(
            desk.store, body.campaign, actor=s.user, reason=body.reason, window=window, via="web"
        )
    except campaigns.CampaignError as exc:
        raise HTTPException(404, str(exc)) from None
    return done.as_dict()


# -- pages ------------------------------------------------------------------------
@router.get("/campaigns", response_class=HTMLResponse, include_in_schema=False)
def campaigns_page(s: Viewer, desk: DeskDep, pages: PagesDep) -> Response:
    return pages.render("campaigns.html", s, campaigns=campaigns.active(desk.store))


@router.post("/campaigns/block", include_in_schema=False)
def block_page(
    s: Operator,
    desk: DeskDep,
    campaign: Annotated[str, Form(max_length=16)],
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    _act(desk, s, "block", _body(campaign, reason))
    return RedirectResponse("/campaigns", status_code=303)


@router.post("/campaigns/release", include_in_schema=False)
def release_page(
    s: Operator,
    desk: DeskDep,
    campaign: Annotated[str, Form(max_length=16)],
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    _act(desk, s, "release", _body(campaign, reason))
    return RedirectResponse("/campaigns", status_code=303)


def _body(campaign: str, reason: str) -> CampaignBody:
    if not campaigns.ID.match(campaign):
        raise HTTPException(400, "not a campaign id")
    return CampaignBody(campaign=campaign, reason=reason)


# -- JSON API ---------------------------------------------------------------------
@router.get("/api/campaigns")
def api_campaigns(s: Viewer, desk: DeskDep) -> list[dict[str, Any]]:
    return [c.as_dict() for c in campaigns.active(desk.store)]


@router.post("/api/campaigns/block")
def api_block(s: ApiOperator, desk: DeskDep, body: CampaignBody) -> dict[str, Any]:
    return _act(desk, s, "block", body)


@router.post("/api/campaigns/release")
def api_release(s: ApiOperator, desk: DeskDep, body: CampaignBody) -> dict[str, Any]:
    return _act(desk, s, "release", body)
