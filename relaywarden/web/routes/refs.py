"""Reference lookup: any decision by the RW-… reference a customer quotes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, Response

from relaywarden.desk.refs import RefError
from relaywarden.web.deps import DeskDep, PagesDep, Viewer

router = APIRouter()


@router.get("/ref", response_class=HTMLResponse, include_in_schema=False)
def ref_page(
    s: Viewer, desk: DeskDep, pages: PagesDep, ref: Annotated[str, Query(max_length=40)] = ""
) -> Response:
    if not ref:
        return pages.render("ref.html", s, ref="", found=None, held=[])
    try:
        found, held = desk.reference(ref)
    except RefError as exc:
        raise HTTPException(400, str(exc)) from None
    return pages.render("ref.html", s, ref=found.ref, found=found, held=held)


@router.get("/api/ref/{ref}")
def api_ref(s: Viewer, desk: DeskDep, ref: str) -> dict[str, Any]:
    try:
        found, held = desk.reference(ref)
    except RefError as exc:
        raise HTTPException(400, str(exc)) from None
    return {**asdict(found), "held": [e.as_dict() for e in held]}
