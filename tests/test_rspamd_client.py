"""The rspamd client's bounds and fail modes, without rspamd: a port nobody listens
on, and a listener that never answers (the e2e test talks to the real one)."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from relaywarden.checks import Stage
from relaywarden.dns import Resolver
from relaywarden.engine import decide
from relaywarden.identity import Sender
from relaywarden.message import message_from_bytes
from relaywarden.policy import policy_from_dict
from relaywarden.verdict import Action
from tests.fakes import FakeStore
from tests.mail import message


@pytest.fixture
def silent() -> Iterator[socket.socket]:
    """Listens (the kernel completes the handshake) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def judge(port: int, on_error: str, budget: float = 3.0, spent: float = 0.0):  # type: ignore[no-untyped-def]
    policy = policy_from_dict(
        {
            "checks": {"sender": {"enabled": False}},
            "content": {
                "rspamd": {"url": f"http://127.0.0.1:{port}", "timeout": "1s", "on_error": on_error}
            },
        }
    )
    msg = message_from_bytes(message(body=b"Hello, your order shipped.\r\n"))
    session = Resolver(["127.0.0.1:1"], budget=budget).session()
    session.spent = spent
    verdict = decide(msg, Sender(vps="203.0.113.7"), policy, FakeStore(), session, stage=Stage.EOM)
    return verdict, session


def test_rspamd_down_fails_open_or_tempfails_per_policy() -> None:
    port = closed_port()
    opened, _ = judge(port, "open")
    assert opened.action == Action.ACCEPT and not opened.findings
    closed, _ = judge(port, "tempfail")
    assert closed.action == Action.TEMPFAIL
    assert closed.reply is not None and (closed.reply.code, closed.reply.enhanced) == (451, "4.3.0")
    assert [f.name for f in closed.findings] == ["rspamd-unavailable"]


def test_a_silent_rspamd_costs_the_message_budget_and_no_more(silent: socket.socket) -> None:
    port = silent.getsockname()[1]
    verdict, session = judge(port, "open", budget=0.4)
    assert verdict.action == Action.ACCEPT
    # The request's timeout was what was left of the message's budget, and the
    # time it waited is charged to that budget.
    assert session.remaining <= 0.05


def test_a_spent_budget_does_not_ask_rspamd(silent: socket.socket) -> None:
    port = silent.getsockname()[1]
    verdict, _ = judge(port, "tempfail", budget=1.0, spent=1.0)
    assert verdict.action == Action.TEMPFAIL
    readable, _, _ = select.select([silent], [], [], 0)
    assert readable == []  # no connection was ever made


def test_rspamd_url_must_be_http_host_port() -> None:
    from relaywarden.policy import PolicyError

    for bad in ("https://127.0.0.1:11333", "http://127.0.0.1:11333/checkv2?x", "file:///etc"):
        with pytest.raises(PolicyError, match=r"content\.rspamd"):
            policy_from_dict({"content": {"rspamd": {"url": bad}}})
