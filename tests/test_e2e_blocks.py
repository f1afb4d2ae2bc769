"""Every kind of block the desk accepts, made every way it can be made (policy
file, CLI, web page, JSON API), refuses a message from that subject through real
Postfix, and the message is accepted again once the block is lifted.

Each (kind, way) pair uses subjects of its own, so the cases cannot mask each
other. Runtime network:/domain: blocks reach the milter within
`[limits.inventory] refresh` (1 s here): those cases poll, bounded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from relaywarden.desk.service import Desk
from relaywarden.devstack.stack import Outcome, Stack
from relaywarden.policy import load_policy
from relaywarden.web.app import create_app
from tests.conftest import TESTS
from tests.desk import PASSWORDS, cli, desk_policy
from tests.mail import message

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

POLICY = TESTS / "policies" / "blocks.toml"
RCPT = ["buyer@example.org"]
KINDS = ["vps", "network", "customer", "user", "sender", "domain"]
WAYS = ["policy", "cli", "web", "api"]
# Domains the test DNS answers (the envelope domain must exist), one per way.
DOMAINS = {
    "policy": "example.net",
    "cli": "example.com",
    "web": "sinkhole.example",
    "api": "other.example",
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Case:
    subject: str  # as an operator would type it (not always canonical)
    client: str
    mail_from: str
    login: str = ""


def case(kind: str, way: str) -> Case:
    n = WAYS.index(way)
    client = f"203.0.113.{100 + 10 * KINDS.index(kind) + n}"
    mail_from = f"{kind}-{way}@{DOMAINS[way]}"
    match kind:
        case "vps":  # written as /32, as the desk users did
            return Case(f"vps:{client}/32", client, mail_from)
        case "network":
            return Case(f"network:{client}/31", client, mail_from)
        case "customer":  # one customer: its cases run one at a time
            return Case("customer:blockco", client, mail_from)
        case "user":
            return Case(f"user:login-{way}", client, mail_from, login=f"login-{way}")
        case "sender":
            return Case(f"sender:{mail_from.upper()}", client, mail_from)
        case _:
            return Case(f"domain:{DOMAINS[way]}", "198.51.100.200", mail_from)


@pytest.fixture(scope="module")
def bstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    policy = tmp_path_factory.mktemp("blocks") / "policy.toml"
    policy.write_text(POLICY.read_text())
    with Stack(policy) as running:
        yield running


@pytest.fixture(scope="module")
def web(
    bstack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str]]:
    path = desk_policy(bstack, tmp_path_factory.mktemp("desk") / "desk.toml")
    # The desk policy is the e2e one plus users; blocks are about Redis, which is shared.
    policy = load_policy(path)
    app = create_app(Desk.from_policy(policy, bstack.redis_url), policy.web)
    with TestClient(app, base_url="https://testserver") as client:
        form = client.get("/login")
        token = CSRF.search(form.text)
        assert token
        done = client.post(
            "/login",
            data={"username": "olga", "password": PASSWORDS["olga"], "csrf": token.group(1)},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        found = CSRF.search(client.get("/").text)
        assert found
        yield client, found.group(1)


def send(stack: Stack, c: Case, tag: str) -> Outcome:
    data = message(c.mail_from, subject=f"blocks {tag}")
    return stack.fate(stack.send(c.mail_from, RCPT, data, client=c.client, login=c.login))


def until(stack: Stack, c: Case, tag: str, fate: str, seconds: float = 20) -> Outcome:
    """Send until the message gets `fate` (a block made or lifted elsewhere takes
    effect within the refresh interval, or after a policy reload)."""
    deadline = time.monotonic() + seconds
    n = 0
    while True:
        n += 1
        outcome = send(stack, c, f"{tag} #{n}")
        if outcome.fate == fate or time.monotonic() > deadline:
            return outcome
        time.sleep(0.3)


def make_and_lift(
    way: str, stack: Stack, web: tuple[TestClient, str], subject: str
) -> tuple[Callable[[], None], Callable[[], None]]:
    client, csrf = web
    policy_file = stack.policy
    original = policy_file.read_text()

    def policy_block() -> None:
        policy_file.write_text(
            original + f'\n[[blocks]]\nsubject = "{subject}"\nreason = "table test"\n'
        )
        assert stack.milter is not None
        stack.milter.reload()

    def policy_unblock() -> None:
        policy_file.write_text(original)
        assert stack.milter is not None
        stack.milter.reload()

    def cli_block() -> None:
        run = cli(policy_file, stack.redis_url, "block", subject, "--for", "1h", "--reason", "t")
        assert run.returncode == 0, run.stderr

    def cli_unblock() -> None:
        run = cli(policy_file, stack.redis_url, "unblock", subject)
        assert run.returncode == 0 and "unblocked" in run.stdout, (run.stdout, run.stderr)

    def web_block() -> None:
        done = client.post(
            "/blocks",
            data={"csrf": csrf, "subject": subject, "reason": "table test", "duration": "1h"},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text

    def web_unblock() -> None:
        done = client.post(
            "/blocks/lift", data={"csrf": csrf, "subject": subject}, follow_redirects=False
        )
        assert done.status_code == 303, done.text

    def api_block() -> None:
        done = client.post(
            "/api/blocks",
            json={"subject": subject, "reason": "table test", "duration": "1h"},
            headers={"X-CSRF-Token": csrf},
        )
        assert done.status_code == 200, done.text

    def api_unblock() -> None:
        done = client.post(
            "/api/blocks/lift", json={"subject": subject}, headers={"X-CSRF-Token": csrf}
        )
        assert done.status_code == 200 and done.json()["was_blocked"], done.text

    return {
        "policy": (policy_block, policy_unblock),
        "cli": (cli_block, cli_unblock),
        "web": (web_block, web_unblock),
        "api": (api_block, api_unblock),
    }[way]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("kind", KINDS)
def test_block_refuses_then_unblock_accepts(
    bstack: Stack, web: tuple[TestClient, str], kind: str, way: str
) -> None:
    c = case(kind, way)
    tag = f"{kind}/{way}"
    assert send(bstack, c, f"{tag} before").fate == "delivered"
    block, lift = make_and_lift(way, bstack, web, c.subject)
    block()
    refused = until(bstack, c, f"{tag} blocked", "rejected")
    assert refused.fate == "rejected", (tag, refused.reply)
    assert (refused.result.code, refused.result.enhanced) == (550, "5.7.1")
    assert "blocked by relay policy" in refused.result.text
    lift()
    assert until(bstack, c, f"{tag} lifted", "delivered").fate == "delivered", tag
