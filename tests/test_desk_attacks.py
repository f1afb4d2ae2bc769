"""The desk under attack: each hole a penetration test found, as a test.

Driven in-process (httpx through the ASGI app, or raw ASGI where the client must
not read the body for us) against the real Redis and the real Postfix hold queue
of the shared e2e stack; the CLI as an operator types it.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from relaywarden import audit
from relaywarden.desk.service import Desk
from relaywarden.devstack.stack import Stack
from relaywarden.policy import PolicyError, load_policy
from relaywarden.policy.durations import MAX_DURATION, parse_duration
from relaywarden.store import RedisStore, connect
from relaywarden.web import auth as auth_module
from relaywarden.web.app import create_app
from relaywarden.web.auth import Auth, LoginResult, hash_password
from relaywarden.web.guard import CSP
from tests.desk import PASSWORDS, cli, desk_policy, hold
from tests.test_web import CSRF, login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ABSURD = "9999999999999999999w"


def app_for(stack: Stack, policy: Path, prefix: str):  # type: ignore[no-untyped-def]
    """The desk on its own key prefix, so what a test does stays its own."""
    pol = load_policy(policy)
    base = Desk.from_policy(pol, stack.redis_url, policy)
    store = RedisStore(connect(stack.redis_url, 5.0), prefix)
    return create_app(Desk(store, pol.quarantine, base.postfix, pol, policy), pol.web)


@pytest.fixture(scope="module")
def policy_file(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return desk_policy(stack, tmp_path_factory.mktemp("attacks") / "desk.toml")


@pytest.fixture
def fresh(stack: Stack, policy_file: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    prefix = "rwatk" + str(abs(hash(request.node.name)) % 10**8)
    return app_for(stack, policy_file, prefix)


@pytest.fixture
def operator(fresh) -> Iterator[tuple[TestClient, str]]:  # type: ignore[no-untyped-def]
    with TestClient(fresh) as client:
        yield client, login(client, "olga")


@pytest.fixture
def reviewer(stack: Stack, policy_file: Path) -> Iterator[TestClient]:
    """An operator on the milter's own key prefix: the messages it holds are listed."""
    with TestClient(app_for(stack, policy_file, "rw")) as client:
        login(client, "olga")
        yield client


# -- previews ---------------------------------------------------------------------
PHISH_HTML = (
    b"<html><body><p>Your account is limited.</p>"
    b'<p><a href="https://paypa1-login.example/verify">https://www.paypal.com/signin</a></p>'
    b"<script>steal()</script></body></html>"
)
RLO_NAME = "invoice\u202efdp.exe"


def phish_body() -> tuple[bytes, list[bytes]]:
    exe = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200
    name = base64.b64encode(RLO_NAME.encode()).decode()
    body = (
        b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
        b"--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee you at lunch.\r\n"
        b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + PHISH_HTML + b"\r\n"
        b"--b2--\r\n"
        b"--b1\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="=?utf-8?b?' + name.encode() + b'?="\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(exe) + b"\r\n"
        b"--b1--\r\n"
    )
    headers = [b"MIME-Version: 1.0", b'Content-Type: multipart/mixed; boundary="b1"']
    return body, headers


def test_reviewer_sees_every_part_real_link_targets_and_the_disguised_attachment(
    stack: Stack, reviewer: TestClient
) -> None:
    client = reviewer
    body, headers = phish_body()
    qid = hold(stack, "harmless lunch", client="203.0.113.41", body=body, extra_headers=headers)
    page = client.get(f"/message/{qid}")
    assert page.status_code == 200, page.text
    text = page.text
    # The HTML part is shown although a text/plain part is present, converted.
    assert "See you at lunch." in text and "Your account is limited." in text
    assert "https://www.paypal.com/signin [-&gt; https://paypa1-login.example/verify]" in text
    assert "steal()" not in text and "<script" not in text
    # The attachment: its name with the override made visible, both types, a warning.
    assert "invoice[RLO]fdp.exe" in text and "\u202e" not in text
    assert "application/pdf" in text and "application/x-msdownload" in text
    assert "executable or macro content" in text
    shown = client.get(f"/api/quarantine/{qid}").json()
    (attachment,) = shown["attachments"]
    assert attachment["declared"] == "application/pdf"
    assert attachment["detected"] == "application/x-msdownload"
    html = next(p for p in shown["parts"] if p["content_type"] == "text/html")
    assert html["links"] == [
        ["https://www.paypal.com/signin", "https://paypa1-login.example/verify"]
    ]


def test_hostile_html_previews_quickly_and_a_slow_preview_is_stopped(
    stack: Stack, tmp_path: Path, reviewer: TestClient
) -> None:
    client = reviewer
    hostile = b"<html><body>" + b"<script" * 30_000 + b"\r\n"
    qid = hold(
        stack,
        "script flood",
        client="203.0.113.42",
        body=hostile,
        extra_headers=[b"MIME-Version: 1.0", b"Content-Type: text/html"],
    )
    page = client.get(f"/message/{qid}")
    assert page.status_code == 200 and "script flood" in page.text
    # A preview over its time limit is stopped; the page still answers, and says so.
    slow = desk_policy(stack, tmp_path / "slow.toml")
    text = slow.read_text().replace("[quarantine]\n", '[quarantine]\npreview_timeout = "1ms"\n')
    slow.write_text(text)
    app = app_for(stack, slow, "rw")
    with TestClient(app) as other:
        login(other, "olga")
        stopped = other.get(f"/message/{qid}")
    assert stopped.status_code == 200
    assert "no preview: the preview took longer than 0.001s" in stopped.text


# -- durations --------------------------------------------------------------------
def test_absurd_durations_are_refused_everywhere(
    stack: Stack, policy_file: Path, tmp_path: Path, operator: tuple[TestClient, str]
) -> None:
    with pytest.raises(ValueError, match="at most 10 years"):
        parse_duration(ABSURD)
    assert parse_duration("3650d") == MAX_DURATION
    client, csrf = operator
    form = client.post(
        "/blocks",
        data={"csrf": csrf, "subject": "vps:198.51.100.90", "reason": "x", "duration": ABSURD},
    )
    api = client.post(
        "/api/blocks",
        json={"subject": "vps:198.51.100.90", "reason": "x", "duration": ABSURD},
        headers={"X-CSRF-Token": csrf},
    )
    assert (form.status_code, api.status_code) == (400, 400)
    assert "at most 10 years" in form.text
    # The web form wants a duration, like the CLI ("ever" = until lifted).
    missing = client.post(
        "/blocks", data={"csrf": csrf, "subject": "vps:198.51.100.90", "reason": "x"}
    )
    assert missing.status_code == 422
    out = cli(policy_file, stack.redis_url, "block", "vps:198.51.100.90", "--for", ABSURD,
              "--reason", "x")  # fmt: skip
    assert out.returncode != 0 and "at most 10 years" in out.stderr + out.stdout
    assert "198.51.100.90" not in cli(policy_file, stack.redis_url, "status", "vps:198.51.100.90",
                                      "--json").stdout.split('"blocks"', 1)[-1][:200]  # fmt: skip
    assert client.get("/blocks").status_code == 200
    assert client.get("/status", params={"subject": "vps:198.51.100.90"}).status_code == 200
    assert not any(a["action"] == "block" for a in client.get("/api/audit").json())
    bad = tmp_path / "bad.toml"
    bad.write_text(
        policy_file.read_text().replace("[web]\n", f'[web]\nsession_idle = "{ABSURD}"\n')
    )
    with pytest.raises(PolicyError, match="session_idle"):
        load_policy(bad)


# -- headers, hosts, bodies -------------------------------------------------------
def test_error_pages_and_internal_errors_carry_the_security_headers(
    fresh,
    operator: tuple[TestClient, str],  # type: ignore[no-untyped-def]
) -> None:
    client, _ = operator

    def boom() -> list[Any]:
        raise RuntimeError("secret detail")

    fresh.state.desk.blocks = boom  # a fault inside a page, as a bug would raise it
    for response, code in (
        (client.get("/message/4jbxmr3LvPzJ9Nx"), 404),
        (client.get("/status", params={"subject": "nonsense"}), 400),
        (client.get("/blocks"), 500),
        (client.get("/api/blocks"), 500),
    ):
        assert response.status_code == code
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-frame-options"] == "DENY"
        assert "secret detail" not in response.text


def test_unknown_host_is_refused(fresh) -> None:  # type: ignore[no-untyped-def]
    with TestClient(fresh, base_url="http://evil.example") as client:
        response = client.get("/login")
    assert response.status_code == 400
    assert response.headers["content-security-policy"] == CSP
    with TestClient(fresh, base_url="http://127.0.0.1:8025") as client:
        assert client.get("/login").status_code == 200


def raw_post(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], chunks: int
) -> tuple[int, int]:
    """POST `chunks` MiB through the ASGI app; (status, chunks the app read)."""
    read = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        more = read < chunks
        return {"type": "http.request", "body": b"x" * (1 << 20), "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8025),
        "headers": [(b"host", b"127.0.0.1:8025"), *headers],
    }  # fmt: skip
    anyio.run(app, scope, receive, send)
    return status, read


def test_bodies_are_refused_unread_without_a_session_and_capped_with_one(
    fresh,
    operator: tuple[TestClient, str],  # type: ignore[no-untyped-def]
) -> None:
    form = (b"content-type", b"application/x-www-form-urlencoded")
    # 100 MiB from a stranger, streamed without a length: refused before one byte is read.
    assert raw_post(fresh, "/bulk", [form], 100) == (303, 0)
    assert raw_post(fresh, "/api/bulk", [(b"content-type", b"application/json")], 100) == (401, 0)
    # Declared too large: refused unread even on the open login form.
    big = (b"content-length", str(100 << 20).encode())
    assert raw_post(fresh, "/login", [form, big], 100) == (413, 0)
    # With a session, a streamed body is cut off at [web] max_body.
    client, csrf = operator
    cookie = (b"cookie", f"rw_session={client.cookies['rw_session']}".encode())
    status, read = raw_post(fresh, "/bulk", [form, cookie], 100)
    assert status == 413 and read == 1
    json_type = {"X-CSRF-Token": csrf, "content-type": "application/json"}
    small = client.post("/api/bulk", content=b"{" + b" " * 70_000 + b"}", headers=json_type)
    assert small.status_code == 413


# -- the login throttle -----------------------------------------------------------
def throttle_cfg(policy_file: Path, **web: Any):  # type: ignore[no-untyped-def]
    pol = load_policy(policy_file)
    return pol.web.model_copy(update=web)


def test_login_throttle_cannot_be_raced_and_hashing_is_bounded(
    stack: Stack, policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(connect(stack.redis_url, 5.0), "rwatkrace")
    auth = Auth(store, throttle_cfg(policy_file, login_attempts=5))
    results: list[LoginResult] = []
    start = threading.Barrier(60)

    def attempt() -> None:
        start.wait()
        results.append(auth.login("olga", "wrong guess", "198.51.100.5")[0])

    threads = [threading.Thread(target=attempt) for _ in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    # Exactly five password checks (WRONG); the other 55 were refused before hashing.
    assert results.count(LoginResult.WRONG) == 5
    assert results.count(LoginResult.THROTTLED) == 55
    # At most MAX_HASHING verifications run at once; the next waits, then gives up.
    monkeypatch.setattr(auth_module, "HASH_WAIT", 0.05)
    for _ in range(auth_module.MAX_HASHING):
        assert auth._hashing.acquire(timeout=1)
    try:
        assert auth.login("victor", PASSWORDS["victor"], "198.51.100.6")[0] is LoginResult.BUSY
    finally:
        for _ in range(auth_module.MAX_HASHING):
            auth._hashing.release()
    assert auth.login("victor", PASSWORDS["victor"], "198.51.100.6")[0] is LoginResult.OK


def test_throttle_is_per_user_and_address_behind_a_trusted_proxy_and_can_be_lifted(
    stack: Stack, tmp_path: Path
) -> None:
    web = 'login_attempts = 2\ntrusted_proxies = ["127.0.0.1"]'
    policy = desk_policy(stack, tmp_path / "proxy.toml", web=web)
    app = app_for(stack, policy, "rw")  # the prefix the CLI uses

    def try_login(user: str, password: str, forwarded: str) -> int:
        # The request comes from the trusted proxy on 127.0.0.1, for `forwarded`.
        with TestClient(app, client=("127.0.0.1", 50000)) as client:
            token = CSRF.search(client.get("/login").text)
            assert token
            return client.post(
                "/login",
                data={"username": user, "password": password, "csrf": token.group(1)},
                headers={"X-Forwarded-For": f"203.0.113.250, {forwarded}"},
                follow_redirects=False,
            ).status_code

    # olga's typos lock olga out from her own address only...
    assert [try_login("olga", "typo", "192.0.2.1") for _ in range(3)] == [401, 401, 429]
    assert try_login("olga", PASSWORDS["olga"], "192.0.2.1") == 429
    # ...not a colleague at the same address, nor olga from elsewhere.
    assert try_login("victor", PASSWORDS["victor"], "192.0.2.1") == 303
    assert try_login("olga", PASSWORDS["olga"], "192.0.2.99") == 303
    # The CLI lifts it (audited).
    out = cli(policy, stack.redis_url, "web", "unlock", "olga", "--reason", "typos")
    assert out.returncode == 0, out.stderr
    assert try_login("olga", PASSWORDS["olga"], "192.0.2.1") == 303
    store = RedisStore(connect(stack.redis_url, 5.0), "rw")
    entry = audit.page(store, audit.AuditFilter(action="unlock-login")).entries[0]
    assert entry.target == "user:olga" and entry.reason == "typos"


def test_forwarded_address_is_believed_only_from_a_trusted_proxy(policy_file: Path) -> None:
    from relaywarden.web.auth import client_address

    cfg = throttle_cfg(policy_file, trusted_proxies=["10.0.0.0/8"])
    xff = "198.51.100.7, 10.1.1.1"
    assert client_address("10.0.0.2", xff, cfg) == "198.51.100.7"
    assert client_address("192.0.2.50", xff, cfg) == "192.0.2.50"
    assert client_address("10.0.0.2", "not-an-ip", cfg) == "10.0.0.2"
    assert client_address("10.0.0.2", None, cfg) == "10.0.0.2"


# -- sessions ---------------------------------------------------------------------
def test_sessions_expire_when_idle_after_their_lifetime_and_on_a_new_password(
    stack: Stack, policy_file: Path
) -> None:
    now = [1_000_000.0]
    store = RedisStore(connect(stack.redis_url, 5.0), "rwatksess")
    cfg = throttle_cfg(policy_file, session_idle=600.0, session_lifetime=3600.0)
    auth = Auth(store, cfg, clock=lambda: now[0])
    result, token = auth.login("olga", PASSWORDS["olga"], "198.51.100.8")
    assert result is LoginResult.OK and token
    key = auth._key("session", token)
    # Idle expiry lives in Redis: each use pushes it out to session_idle again.
    store.client.pexpire(key, 50)
    assert auth.session(token) is not None
    assert 590 <= store.client.ttl(key) <= 600
    # The absolute lifetime holds however busy the session is.
    now[0] += 3601
    assert auth.session(token) is None and store.client.exists(key) == 0
    # A password change in the policy ends every session opened with the old one.
    now[0] = 1_000_000.0
    _, token = auth.login("olga", PASSWORDS["olga"], "198.51.100.8")
    assert auth.session(token) is not None
    users = [
        u.model_copy(update={"password_hash": hash_password("a new password")})
        if u.name == "olga" else u
        for u in cfg.users
    ]  # fmt: skip
    auth.cfg = cfg.model_copy(update={"users": users})
    assert auth.session(token) is None


# -- reasons and the audit trail ----------------------------------------------------
def test_a_hand_run_cli_action_reaches_the_system_log(
    stack: Stack, policy_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    path = tmp_path / "log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(path))
        syslog.settimeout(30)
        monkeypatch.setenv("RELAYWARDEN_SYSLOG", str(path))
        out = cli(policy_file, stack.redis_url, "block", "vps:198.51.100.92", "--for", "1h",
                  "--reason", "seen in syslog", "--as", "sam")  # fmt: skip
        assert out.returncode == 0, out.stderr
        line = syslog.recv(65536).decode()
    assert line.startswith("<86>relaywarden-audit: ")  # authpriv.info, as sudo logs
    entry = json.loads(line.split("relaywarden-audit: ", 1)[1].rstrip("\x00"))
    assert (entry["actor"], entry["action"], entry["target"], entry["reason"]) == (
        "sam", "block", "vps:198.51.100.92", "seen in syslog")  # fmt: skip
    assert cli(policy_file, stack.redis_url, "unblock", "vps:198.51.100.92").returncode == 0


def test_control_characters_in_reasons_never_reach_a_terminal(
    stack: Stack, policy_file: Path, operator: tuple[TestClient, str]
) -> None:
    client, csrf = operator
    forged = "ok\x1b[2J\x1b]0;pwned\x07\r\n2026-01-01 00:00:00Z  root (cli)  unblock everything"
    added = client.post("/api/blocks", headers={"X-CSRF-Token": csrf}, json={
        "subject": "vps:198.51.100.91", "reason": forged, "duration": "1h"})  # fmt: skip
    assert added.status_code == 200, added.text
    entry = client.get("/api/audit", params={"action": "block"}).json()[0]
    assert "\x1b" not in entry["reason"] and "\n" not in entry["reason"]
    # An entry written by something else, raw: the CLI shows the escapes, does not run them.
    store = RedisStore(connect(stack.redis_url, 5.0), "rw")
    raw = {"actor": "old\x1b[31mtool", "action": "release", "target": "X", "reason": forged}
    store.client.xadd(store.keys.audit, {"json": json.dumps(raw)})
    out = cli(policy_file, stack.redis_url, "audit", "--since", "1h", "--limit", "5")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\r" not in out.stdout
    assert "old[U+001B][31mtool" in out.stdout
    assert "unblock everything" in out.stdout.splitlines()[0]  # on the same line: not forged


def test_audit_is_paged_and_filtered_over_the_whole_stream(
    stack: Stack,
    operator: tuple[TestClient, str],
    fresh,  # type: ignore[no-untyped-def]
) -> None:
    client, _ = operator
    store = fresh.state.desk.store
    audit.record(store, audit.AuditEntry("mallory", "release", "4jbxmr3LvPzJ9Nx", "buried"))
    pipe = store.client.pipeline(transaction=False)
    for n in range(1500):
        noop = {"actor": "mallory", "action": "unblock", "target": f"vps:198.51.100.{n % 200}"}
        pipe.xadd(store.keys.audit, {"json": json.dumps(noop)})
    pipe.execute()
    found = client.get("/api/audit", params={"action": "release"}).json()
    assert [(a["target"], a["reason"]) for a in found] == [("4jbxmr3LvPzJ9Nx", "buried")]
    assert "4jbxmr3LvPzJ9Nx" in client.get("/audit", params={"subject": "4jbxmr3LvPzJ9Nx"}).text
    # Paging walks everything: 1,501 entries by mallory, 100 a page, no repeats.
    seen: list[str] = []
    url: str | None = "/api/audit?actor=mallory"
    pages = 0
    while url and pages < 30:
        response = client.get(url)
        seen += [a["id"] for a in response.json()]
        link = response.headers.get("link")
        url = link[1 : link.index(">")] if link else None
        pages += 1
    assert len(seen) == 1501 == len(set(seen))
    html = client.get("/audit", params={"actor": "mallory"}).text
    assert 'id="older"' in html


def test_relaywarden_web_reloads_on_sighup_and_a_removed_user_is_out(
    stack: Stack, tmp_path: Path
) -> None:
    import re
    import signal

    import httpx

    from relaywarden.devstack.procs import poll_until
    from relaywarden.devstack.web import WebProcess

    policy = desk_policy(stack, tmp_path / "reload.toml")
    with (
        WebProcess(policy, stack.redis_url, tmp_path) as web,
        httpx.Client(base_url=web.url, timeout=30) as client,
    ):
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
        assert token
        data = {"username": "victor", "password": PASSWORDS["victor"], "csrf": token.group(1)}
        assert client.post("/login", data=data).status_code == 303
        assert client.get("/blocks").status_code == 200
        # victor leaves the policy; the operator reloads the desk.
        text = policy.read_text()
        start = text.index('[[web.users]]\nname = "victor"')
        policy.write_text(text[:start] + text[start:].split("\n", 4)[-1])
        assert web.proc is not None
        web.proc.popen.send_signal(signal.SIGHUP)
        poll_until(lambda: client.get("/blocks").status_code == 303, 20, "victor logged out")
        assert client.get("/blocks").headers["location"] == "/login"
        log = web.proc.log_text()
        assert "policy reloaded: 1 web users" in log
        assert "login of 'victor'" in log  # logins go to the log, not only to Redis


# -- listing and bulk actions -------------------------------------------------------
BULK_ID = r'name="ids" value="([^"]+)"'


def test_a_flood_of_new_entries_hides_no_older_held_message(stack: Stack, fresh) -> None:  # type: ignore[no-untyped-def]
    from relaywarden.desk import index
    from relaywarden.desk.index import Entry

    store = fresh.state.desk.store
    finding = [{"check": "blocks", "name": "blocked", "score": 0.0}]

    def entry(n: int, vps: str, when: float) -> Entry:
        return Entry(f"4jbxmr3Lv{n:06d}zJ9Nx", "elsewhere", when, f"RW-{n:010d}", "cust-a",
                     vps, "", "promo@shop.example", ["a@example.org"], 1, f"s{n}", "", 5.0,
                     finding)  # fmt: skip

    old = entry(0, "203.0.113.60", 1_000.0)
    flood = [entry(n, "203.0.113.61", 2_000.0 + n) for n in range(1, 6001)]
    index.reindex(store, [old, *flood], retention=10**9)
    desk = fresh.state.desk
    assert [e.queue_id for e in desk.entries(vps="203.0.113.60")] == [old.queue_id]
    assert [e.queue_id for e in desk.entries(search="s0")] == [old.queue_id]
    by_customer = desk.select(customer="cust-a")
    assert len(by_customer.entries) == 500 and by_customer.more and by_customer.older
    # Paging reaches the oldest one; nothing is skipped or repeated.
    seen: list[str] = []
    before = None
    for _ in range(20):
        page = desk.select(finding="blocks/blocked", before=before)
        seen += [e.queue_id for e in page.entries]
        if not page.more:
            break
        before = page.older
    assert len(seen) == 6001 == len(set(seen)) and seen[-1] == old.queue_id


def test_cli_list_filters_and_pages_over_the_whole_index(stack: Stack, policy_file: Path) -> None:
    from relaywarden.desk import index
    from relaywarden.desk.index import Entry

    # A database of its own: the CLI reads the policy's prefix, and no other test's entries.
    url = stack.redis_url.rsplit("/", 1)[0] + "/7"
    store = RedisStore(connect(url, 5.0), "rw")
    store.client.flushdb()

    def entry(n: int, finding: str, when: float) -> Entry:
        return Entry(f"4jbxmr3Lv{n:06d}zJ9Px", "elsewhere", when, f"RW-{n:010d}", "cust-b",
                     "203.0.113.62", "", "promo@shop.example", ["a@example.org"], 1,
                     f"subject {n}", "", 5.0,
                     [{"check": "sender", "name": finding, "score": 1.0}])  # fmt: skip

    old = entry(0, "dmarc-spoof", 1_000.0)
    newer = [entry(n, "burst", 2_000.0 + n) for n in range(1, 8)]
    index.reindex(store, [old, *newer], retention=10**9)

    def listed(*args: str) -> list[str]:
        out = cli(policy_file, url, "quarantine", "list", *args, "--json")
        assert out.returncode == 0, out.stderr
        return [e["queue_id"] for e in json.loads(out.stdout)]

    assert listed("--finding", "sender/dmarc-spoof") == [old.queue_id]
    assert listed("--search", "subject 0") == [old.queue_id]
    first = listed("--limit", "3")
    assert first == [e.queue_id for e in reversed(newer)][:3]
    text = cli(policy_file, url, "quarantine", "list", "--limit", "3")
    hint = [line for line in text.stdout.splitlines() if line.startswith("(more: add --before")]
    assert len(hint) == 1
    before = hint[0].split("--before ")[1].split()[0]
    rest = listed("--before", before)
    assert len(rest) == 5 and rest[-1] == old.queue_id and not set(rest) & set(first)


def test_bulk_acts_on_exactly_the_selection_shown(stack: Stack, reviewer: TestClient) -> None:
    import re

    client = reviewer
    csrf = CSRF.search(client.get("/").text)
    assert csrf
    mine = hold(stack, "bulk target one", client="203.0.113.62")
    bystander = hold(stack, "bulk bystander", client="203.0.113.62")
    # A filtered list (search) shows one of the VPS's two messages: the form carries one.
    listing = client.get("/", params={"vps": "203.0.113.62", "q": "bulk target"}).text
    ids = re.findall(BULK_ID, listing)
    assert [i.split("/")[1] for i in ids] == [mine]
    form = {"csrf": csrf.group(1), "ids": ids, "count": "1", "confirm": "yes",
            "action": "delete"}  # fmt: skip
    assert client.post("/bulk", data=form, follow_redirects=False).status_code == 303
    held_now = {e["queue_id"] for e in stack.postfix.hold_queue()}  # type: ignore[union-attr]
    assert mine not in held_now and bystander in held_now
    # The count confirmed must still be true when the action runs: else nothing is done.
    again = client.post("/bulk", data=form)
    assert again.status_code == 409 and "nothing was done" in again.text
    api = client.post(
        "/api/bulk",
        headers={"X-CSRF-Token": csrf.group(1)},
        json={"action": "delete", "vps": "203.0.113.62", "expect_count": 2},
    )
    assert api.status_code == 409
    assert bystander in {e["queue_id"] for e in stack.postfix.hold_queue()}  # type: ignore[union-attr]
    done = client.post(
        "/api/bulk",
        headers={"X-CSRF-Token": csrf.group(1)},
        json={"action": "delete", "vps": "203.0.113.62", "expect_count": 1},
    )
    assert done.status_code == 200 and [r["queue_id"] for r in done.json()] == [bystander]
