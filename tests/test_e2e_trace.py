"""The trace token end to end: client → real Postfix → RelayWarden stamps the
header → sink; a customer's header of that name is replaced; `relaywarden trace`
turns the delivered header back into the transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaywarden import trace
from relaywarden.devstack.stack import Stack
from relaywarden.policy import load_policy
from tests.conftest import TESTS
from tests.desk import cli
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

POLICY = TESTS / "policies" / "forgery.toml"
RCPT = ["buyer@example.org"]
HEADER = "X-RelayWarden-Trace"


@pytest.fixture(scope="module")
def tstack() -> Iterator[Stack]:
    with Stack(POLICY) as running:
        yield running


def delivered(stack: Stack, subject: str, data: bytes, mail_from: str = "orders@shop.example"):  # type: ignore[no-untyped-def]
    result = stack.send(mail_from, RCPT, data)
    outcome = stack.fate(result)
    assert outcome.fate == "delivered", outcome.reply
    [got] = [m for m in stack.sink.messages if m.subject == subject]
    return result, got


def test_every_passed_message_carries_one_token_naming_its_transaction(tstack: Stack) -> None:
    result, got = delivered(tstack, "trace plain", message(subject="trace plain"))
    [token] = got.headers(HEADER)
    info = trace.verify(token, load_policy(POLICY).trace)
    assert info is not None
    assert (info.relay, info.queue_id, info.key_id) == ("relay1", result.queue_id, "k2")
    # Ours is the last header: added at end of message, after Postfix's own.
    head = got.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[-1].startswith(f"{HEADER}: ".encode())


def test_a_customer_supplied_trace_header_is_replaced(tstack: Stack) -> None:
    policy = load_policy(POLICY)
    # A well-formed token of ours from an earlier message, and made-up ones.
    earlier = trace.stamp(policy.trace, "EARLIER123", 1_795_000_000)
    assert earlier is not None
    extra = [
        f"{HEADER}: {earlier.token}".encode(),
        b"x-relaywarden-trace: forged-by-the-customer",
        f"{HEADER}: AQJrMgAAAAAGcmVsYXkxRk9SR0VE".encode(),
    ]
    result, got = delivered(
        tstack, "trace replaced", message(subject="trace replaced", extra_headers=extra)
    )
    values = got.headers(HEADER)
    assert len(values) == 1, values
    info = trace.verify(values[0], policy.trace)
    assert info is not None and info.queue_id == result.queue_id
    assert b"forged-by-the-customer" not in got.raw and earlier.token.encode() not in got.raw


def test_relaywarden_trace_prints_the_transaction(tstack: Stack) -> None:
    result, got = delivered(tstack, "trace cli", message(subject="trace cli"))
    [token] = got.headers(HEADER)
    run = cli(POLICY, tstack.redis_url, "trace", token)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "relay:     relay1" in out
    assert f"queue id:  {result.queue_id}" in out
    assert "customer:  shop" in out
    assert "vps:       203.0.113.7" in out
    assert "decision:  accept" in out
    as_json = json.loads(cli(POLICY, tstack.redis_url, "trace", token, "--json").stdout)
    assert as_json["queue_id"] == result.queue_id
    assert as_json["decision"]["customer"] == "shop"
    assert as_json["decision"]["action"] == "accept"


def test_relaywarden_trace_refuses_a_tampered_token(tstack: Stack) -> None:
    _, got = delivered(tstack, "trace tamper", message(subject="trace tamper"))
    [token] = got.headers(HEADER)
    bad = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    run = cli(POLICY, tstack.redis_url, "trace", bad)
    assert run.returncode == 1
    assert "not a trace token" in run.stderr and "queue id" not in run.stdout


def test_forwarded_mail_that_passed_the_relay_is_not_forged_received(tstack: Stack) -> None:
    # A copy that left through this relay, reached a customer's server and is sent
    # on again: the relay's Received and token are honest.
    first, got = delivered(tstack, "trace forward 1", message(subject="trace forward 1"))
    [token] = got.headers(HEADER)
    received = [f"Received: {r}".encode() for r in got.headers("Received")]
    again = message(
        subject="trace forward 2", extra_headers=[*received, f"{HEADER}: {token}".encode()]
    )
    assert any(b"relay.test" in r for r in received)  # it names the relay
    result, got2 = delivered(tstack, "trace forward 2", again)
    assert tstack.milter is not None
    records = [
        json.loads(line)
        for line in tstack.milter.log_text().splitlines()
        if line.startswith("{") and f'"{result.queue_id}"' in line
    ]
    [eom] = [r for r in records if r.get("event") == "decision" and r["stage"] == "eom"]
    assert "forged-received" not in {f["name"] for f in eom["findings"]}
    assert eom["action"] == "accept"
    [new_token] = got2.headers(HEADER)
    assert new_token != token and first.queue_id != result.queue_id
    # The same copy without our token: the Received naming the relay is forged.
    bare = message(subject="trace forward 3", extra_headers=received)
    refused = tstack.fate(tstack.send("orders@shop.example", RCPT, bare))
    assert refused.fate == "held"


def test_the_desk_traces_a_token_on_its_page_and_api(tstack: Stack, tmp_path: Path) -> None:
    import re

    from fastapi.testclient import TestClient

    from relaywarden.desk.service import Desk
    from relaywarden.web.app import create_app
    from relaywarden.web.auth import hash_password

    result, got = delivered(tstack, "trace desk", message(subject="trace desk"))
    [token] = got.headers(HEADER)
    desk_file = tmp_path / "desk.toml"
    desk_file.write_text(
        POLICY.read_text()
        + '\n[[web.users]]\nname = "vera"\nrole = "viewer"\n'
        + f'password_hash = "{hash_password("viewer-pass-9")}"\n'
    )
    policy = load_policy(desk_file)
    app = create_app(Desk.from_policy(policy, tstack.redis_url), policy.web)
    csrf = re.compile(r'name="csrf" value="([^"]+)"')
    with TestClient(app, base_url="http://127.0.0.1") as client:
        form = csrf.search(client.get("/login").text)
        assert form
        client.post(
            "/login",
            data={"username": "vera", "password": "viewer-pass-9", "csrf": form.group(1)},
        )
        page = client.get("/trace", params={"token": token})
        assert page.status_code == 200
        assert str(result.queue_id) in page.text and ">shop<" in page.text
        api = client.get("/api/trace", params={"token": token}).json()
        assert api["queue_id"] == result.queue_id and api["decision"]["customer"] == "shop"
        bad = client.get("/api/trace", params={"token": token[:-2] + "xx"})
        assert bad.status_code >= 400 and "not a trace token" in bad.text
