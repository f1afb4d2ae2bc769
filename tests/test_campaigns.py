"""Campaign fingerprints and the campaign rule, through the real adapter (pymilter's
TestCtx) and a real redis-server: copies from many VPSes are stopped once the
campaign is seen, one customer's newsletter is left to its plan, a blocked
campaign is refused for everyone, and it all rides on the end-of-message round trip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest
from Milter.testctx import TestCtx as MilterCtx  # not a pytest class

from relaywarden.content import campaigns
from relaywarden.content.fingerprint import fingerprint
from relaywarden.content.view import ContentView
from relaywarden.policy.content import CampaignsSection
from relaywarden.runtime import Runtime
from relaywarden.store import RedisStore
from tests.limits_support import count_round_trips
from tests.mail import message
from tests.milter_ctx import adapter_runtime, deliver, open_ctx

POLICY = """
[plans.default]
messages = ["100/1m"]

[plans.newsletter]
messages = ["100/1m"]
recipients = ["1000/1m"]

[[customers]]
id = "cust-news"
plan = "newsletter"
networks = ["192.0.2.10/32"]
domains = ["news.example"]

[checks.sender]
enabled = false

[limits.burst]
enabled = false

[limits.inventory]
refresh = "1h"

[campaigns]
vpses = 3
customers = 3
recipients = 40
"""

PRIZE = (
    "Dear {name},\r\n\r\nCongratulations! You have been selected as the winner of our"
    " monthly prize draw: {amount} EUR are waiting for you. To claim your prize visit"
    " https://prize-claim.example/c?id={amount}&utm_source=mail&r={name} before Friday,"
    " otherwise the prize goes to the next winner in line.\r\n\r\nKind regards,\r\n"
    "The prize team\r\n"
)
NEWS = (
    "Hello {name},\r\n\r\nthis month at the bakery: rye sourdough is back on Tuesdays,"
    " the new cinnamon buns arrive on Friday mornings and our summer opening hours"
    " start next week. See https://news.example/m?u={name} for the full programme.\r\n"
)


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    with adapter_runtime(tmp_path, monkeypatch, POLICY, quarantine=True) as rt:
        yield rt


def send(ip: str, mail_from: str, rcpts: list[str], body: str, subject: str) -> tuple[int, str]:
    ctx = open_ctx(ip)
    assert ctx._envfrom(f"<{mail_from}>") == Milter.CONTINUE
    for rcpt in rcpts:
        assert ctx._envrcpt(f"<{rcpt}>") == Milter.CONTINUE
    rc = deliver(ctx, message(mail_from, subject, to=rcpts[0], body=body.encode()))
    ctx._close()
    return rc, _fate(rc, ctx)


def _fate(rc: int, ctx: MilterCtx) -> str:
    if rc == Milter.ACCEPT:
        return "held" if getattr(ctx, "_quarantine", None) else "accepted"
    return {Milter.REJECT: "rejected", Milter.TEMPFAIL: "tempfailed"}.get(rc, str(rc))


def prize(n: int, vps: int) -> tuple[str, str, list[str], str, str]:
    name = ["John", "Maria", "Ahmed", "Wei", "Olga"][n % 5]
    rcpt = f"{name.lower()}.{n}@example.org"
    body = PRIZE.format(name=name, amount=1000 + 37 * n + vps)
    return f"198.51.100.{vps}", f"winner@vps{vps}.example", [rcpt], body, "You won!"


# -- the fingerprint ---------------------------------------------------------------------
def test_copies_share_a_band_and_other_mail_does_not() -> None:
    cfg = CampaignsSection()

    def fp(body: str, rcpt: str):  # type: ignore[no-untyped-def]
        return fingerprint(ContentView(text=body), [rcpt], cfg)

    one = fp(PRIZE.format(name="John", amount=1234), "john.smith@example.org")
    # Another name, another amount and tracking id: the same bands.
    two = fp(PRIZE.format(name="Maria", amount=987), "maria@example.net")
    assert one is not None and two is not None and one.bands == two.bands
    # One word changed: most bands, at least one, still match.
    edited = fp(PRIZE.format(name="Wei", amount=5).replace("monthly", "weekly"), "w@example.org")
    assert edited is not None and len(set(one.bands) & set(edited.bands)) >= 1
    other = fp(NEWS.format(name="Olga"), "olga@example.org")
    assert other is not None and not set(one.bands) & set(other.bands)
    assert fp("Thanks, see you soon", "a@example.org") is None  # too short to tell apart


# -- through the adapter -------------------------------------------------------------------
def test_campaign_from_many_vpses_is_stopped_after_its_first_copies(runtime: Runtime) -> None:
    fates = []
    for copy in range(2):
        for vps in range(1, 7):
            ip, mail_from, rcpts, body, subject = prize(copy * 10 + vps, vps)
            fates.append(_send(ip, mail_from, rcpts, body, subject))
    # VPS 1 and 2 pass; the third VPS makes it a campaign: it and all later copies held.
    assert fates == ["accepted", "accepted"] + ["held"] * 10
    events = runtime.store.recent_events(50)
    held = [e for e in events if e["action"] == "quarantine"]
    assert len(held) == 10
    finding = next(f for f in held[0]["findings"] if f["check"] == "campaigns")
    assert finding["name"] == "campaign" and finding["evidence"]["vpses"] >= 3
    listed = campaigns.active(runtime.store)  # type: ignore[arg-type]
    assert len(listed) == 1 and listed[0].subject == "You won!" and listed[0].vpses == 6
    assert listed[0].messages == 12


def test_one_customers_newsletter_is_governed_by_its_plan(runtime: Runtime) -> None:
    rcpts = [f"reader{n}@example.org" for n in range(25)]
    fates = [
        _send("192.0.2.10", "letter@news.example", rcpts, NEWS.format(name=f"r{n}"), "News")
        for n in range(4)
    ]
    # 100 recipients > the campaign rule's 40, all from one customer's VPS: delivered.
    assert fates == ["accepted"] * 4
    (news,) = campaigns.active(runtime.store)  # type: ignore[arg-type]
    assert (news.vpses, news.customers, news.recipients) == (1, 1, 100)


def test_same_text_from_a_second_customer_to_many_recipients_is_a_campaign(
    runtime: Runtime,
) -> None:
    rcpts = [f"reader{n}@example.org" for n in range(25)]
    body = NEWS.format(name="x")
    assert _send("192.0.2.10", "letter@news.example", rcpts, body, "News") == "accepted"
    # Another customer sends the same text: 50 recipients from two customers.
    assert _send("198.51.100.77", "copy@other.example", rcpts, body, "News") == "held"


def test_blocked_campaign_is_refused_for_every_customer_until_released(runtime: Runtime) -> None:
    store = runtime.store
    assert isinstance(store, RedisStore)
    ip, mail_from, rcpts, body, subject = prize(1, 1)
    assert _send(ip, mail_from, rcpts, body, subject) == "accepted"
    (found,) = campaigns.active(store)
    campaigns.block(store, found.id, actor="tester", reason="prize scam", window=3600)
    # Another customer, another name and amount: refused.
    ip, mail_from, rcpts, body, subject = prize(2, 9)
    rc, fate = send(ip, mail_from, rcpts, body, subject)
    assert rc == Milter.REJECT
    assert fate == "rejected"
    event = store.recent_events(1)[0]
    assert event["action"] == "reject" and "blocked bulk campaign" in event["reply"]
    audit = store.client.xrevrange(store.keys.audit, count=1)
    assert b"campaign:" + found.id.encode() in audit[0][1][b"json"]
    campaigns.release(store, found.id, actor="tester", reason="false alarm", window=3600)
    assert _send(*prize(3, 1)) == "accepted"


def test_a_message_costs_two_round_trips_with_campaigns_on(runtime: Runtime) -> None:
    assert _send(*prize(1, 1)) == "accepted"  # loads the scripts: once per Redis
    sent = count_round_trips(runtime.store.client)  # type: ignore[attr-defined]
    assert _send(*prize(2, 2)) == "accepted"
    assert sent() == 2  # MAIL FROM, and end of message with the campaign's record and read


def _send(ip: str, mail_from: str, rcpts: list[str], body: str, subject: str) -> str:
    return send(ip, mail_from, rcpts, body, subject)[1]
