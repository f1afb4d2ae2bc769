"""The desk's page groups, one module each; `create_app` includes them in this order.

To add a page group: write `routes/<group>.py` with `router = APIRouter()` and its
pages (HTML) and API routes (under /api/), taking who is asking and the desk
from `relaywarden.web.deps` (Viewer, Operator for forms, ApiOperator for the API,
DeskDep, PagesDep); put its templates in `web/templates/`; then list the module
in PAGE_GROUPS below, with a navigation entry if it has a page of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from relaywarden.web.routes import (
    audit,
    blocks,
    campaigns,
    login,
    outcomes,
    quarantine,
    refs,
    status,
    trace,
)


@dataclass(frozen=True)
class PageGroup:
    router: APIRouter
    nav: tuple[str, str] | None = None  # (label, path) in the header's navigation


PAGE_GROUPS: list[PageGroup] = [
    PageGroup(login.router),
    PageGroup(quarantine.router, ("Quarantine", "/")),
    PageGroup(blocks.router, ("Blocks", "/blocks")),
    PageGroup(campaigns.router, ("Campaigns", "/campaigns")),
    PageGroup(status.router, ("Subject status", "/status")),
    PageGroup(outcomes.router, ("Outcomes", "/outcomes")),
    PageGroup(outcomes.complaints_router, ("Complaints", "/complaints")),
    PageGroup(audit.router, ("Audit log", "/audit")),
    PageGroup(refs.router, ("Reference", "/ref")),
    PageGroup(trace.router, ("Trace", "/trace")),
]
