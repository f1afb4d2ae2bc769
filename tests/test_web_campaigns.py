"""The desk's campaigns page and API: listing (escaped), block and release by an
operator (audited), viewers refused; in-process against the e2e stack's Redis,
campaigns recorded by the same end-of-message code the milter runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from relaywarden.content import campaigns
from relaywarden.content.fingerprint import fingerprint
from relaywarden.content.view import ContentView
from relaywarden.devstack.stack import Stack
from relaywarden.identity import Sender
from relaywarden.limits import scripts
from relaywarden.message import Message
from relaywarden.policy.content import CampaignsSection
from relaywarden.store import Outcome, RedisStore, connect
from relaywarden.verdict import Action, Verdict
from tests.desk import desk_policy
from tests.test_web import login, make_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PREFIX = "rwcampaigns"  # not the running milter's keys
XSS_SUBJECT = "<script>alert('campaign')</script>"
TEXT = (
    "Your parcel could not be delivered because of an unpaid customs fee. Pay the"
    " fee today at the link below so that the parcel can be delivered tomorrow."
)


def record(store: RedisStore, subject: str, vps: str) -> str:
    """One copy, through the finish hook and campaign.lua as the milter records it."""
    fp = fingerprint(ContentView(text=TEXT), ["x@example.org"], CampaignsSection())
    assert fp is not None
    msg = Message(mail_from="parcel@vps.example")
    msg.add_header("Subject", subject.encode())
    msg.add_rcpt("x@example.org")
    msg.notes[campaigns.NOTE] = campaigns.Tracked(fp, 3600)
    verdict = Verdict(action=Action.ACCEPT, reply=None, score=0, findings=(), ref="RW-TEST")
    scripts.load(store.client)
    pipe = store.client.pipeline(transaction=False)
    campaigns.finish_hook(store, pipe, Outcome(msg, Sender(vps=vps), verdict, {"stage": "eom"}))
    (reply,) = pipe.execute()
    return campaigns.Totals.parse(reply).id


@pytest.fixture(scope="module")
def app(stack: Stack, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = desk_policy(stack, tmp_path_factory.mktemp("web") / "desk.toml")
    return make_app(stack, Path(path), prefix=PREFIX)


@pytest.fixture(scope="module")
def campaign(stack: Stack) -> str:
    store = RedisStore(connect(stack.redis_url, 5.0), PREFIX)
    ids = {record(store, XSS_SUBJECT, f"198.51.100.{n}") for n in range(1, 4)}
    (found,) = ids
    return found


@pytest.fixture
def operator(app) -> Iterator[tuple[TestClient, str]]:  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        yield client, login(client, "olga")


@pytest.fixture
def viewer(app) -> Iterator[tuple[TestClient, str]]:  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        yield client, login(client, "victor")


def test_campaign_listed_with_its_subject_escaped(viewer, campaign: str) -> None:  # type: ignore[no-untyped-def]
    client, _ = viewer
    page = client.get("/campaigns")
    assert page.status_code == 200 and campaign in page.text
    assert XSS_SUBJECT not in page.text
    assert "&lt;script&gt;alert(&#39;campaign&#39;)&lt;/script&gt;" in page.text
    (listed,) = [c for c in client.get("/api/campaigns").json() if c["id"] == campaign]
    assert (listed["vpses"], listed["messages"], listed["subject"]) == (3, 3, XSS_SUBJECT)
    # A viewer sees no buttons and cannot act.
    assert "/campaigns/block" not in page.text
    done = client.post("/api/campaigns/block", json={"campaign": campaign}, headers={})
    assert done.status_code == 403


def test_operator_blocks_and_releases_and_both_are_audited(operator, campaign: str) -> None:  # type: ignore[no-untyped-def]
    client, csrf = operator
    blocked = client.post(
        "/campaigns/block",
        data={"csrf": csrf, "campaign": campaign, "reason": "parcel scam"},
        follow_redirects=False,
    )
    assert blocked.status_code == 303
    page = client.get("/campaigns").text
    assert "<strong>blocked</strong>" in page and "/campaigns/release" in page
    released = client.post(
        "/api/campaigns/release",
        json={"campaign": campaign, "reason": "false alarm"},
        headers={"X-CSRF-Token": csrf},
    )
    assert released.status_code == 200 and released.json()["blocked"] is False
    audit = [(a["action"], a["target"], a["via"]) for a in client.get("/api/audit").json()]
    assert ("block", f"campaign:{campaign}", "web") in audit
    assert ("unblock", f"campaign:{campaign}", "web") in audit


def test_unknown_or_malformed_campaigns_are_refused(operator) -> None:  # type: ignore[no-untyped-def]
    client, csrf = operator
    headers = {"X-CSRF-Token": csrf}
    unknown = client.post("/api/campaigns/block", json={"campaign": "0" * 16}, headers=headers)
    assert unknown.status_code == 404
    bad = client.post("/api/campaigns/block", json={"campaign": "../x"}, headers=headers)
    assert bad.status_code == 422
    form = client.post("/campaigns/block", data={"csrf": csrf, "campaign": "zz"})
    assert form.status_code == 400
    without_csrf = client.post("/campaigns/block", data={"campaign": "0" * 16})
    assert without_csrf.status_code == 403
