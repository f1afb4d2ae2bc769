"""The desk shows whose mail a scoped `sender:` block covers, lifts it and audits
both: the real web app (TestClient) on the e2e stack's Redis and Postfix."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from relaywarden import blocking
from relaywarden.desk.service import Desk
from relaywarden.devstack.stack import Stack
from relaywarden.policy import load_policy
from relaywarden.store import RedisStore, connect
from relaywarden.subjects import parse_subject
from relaywarden.web.app import create_app
from tests.desk import desk_policy
from tests.test_web import login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
PREFIX = "rwscoped"
SCOPED = "customer:cust-a/sender:victim@shared.example"


@pytest.fixture
def desk(stack: Stack, tmp_path: Path) -> Iterator[tuple[TestClient, str, RedisStore]]:
    """An operator's session on a desk with its own key prefix."""
    policy = desk_policy(stack, tmp_path / "desk.toml")
    pol = load_policy(policy)
    base = Desk.from_policy(pol, stack.redis_url, policy)
    store = RedisStore(connect(stack.redis_url, 5.0), PREFIX)
    app = create_app(Desk(store, pol.quarantine, base.postfix, pol, policy), pol.web)
    with TestClient(app) as client:
        yield client, login(client, "olga"), store
    for key in store.client.scan_iter(match=PREFIX + ":*"):
        store.client.delete(key)


def test_the_desk_lists_whose_mail_a_scoped_block_covers_and_lifts_it(
    desk: tuple[TestClient, str, RedisStore],
) -> None:
    client, csrf, store = desk
    # As escalation sets it (actor "relaywarden"), beside a person's relay-wide one.
    blocking.block(
        store, parse_subject(SCOPED), actor="relaywarden", reason="automatic", duration=3600
    )
    blocking.block(
        store, parse_subject("sender:x@shop.example"), actor="olga", reason="phish", duration=60
    )
    rows = {b["subject"]: b["covers"] for b in client.get("/api/blocks").json()}
    assert rows == {SCOPED: "customer:cust-a", "sender:x@shop.example": "relay-wide"}
    page = html.unescape(client.get("/blocks").text)
    assert f">{SCOPED}</a></td><td>customer:cust-a</td>" in page
    assert ">sender:x@shop.example</a></td><td>relay-wide</td>" in page

    lifted = client.post(
        "/api/blocks/lift",
        headers={"X-CSRF-Token": csrf},
        json={"subject": SCOPED, "reason": "cleaned up"},
    )
    assert lifted.status_code == 200 and lifted.json() == {"was_blocked": True}
    assert [b["subject"] for b in client.get("/api/blocks").json()] == ["sender:x@shop.example"]
    entries = client.get("/api/audit", params={"action": "unblock"}).json()
    assert entries[0]["target"] == SCOPED and entries[0]["actor"] == "olga"
