"""The desk's web page and API: login, roles, CSRF, escaping, refusals, fuzzing.

Driven in-process (httpx through the ASGI app) against the real Redis and the
real Postfix hold queue of the shared e2e stack.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from relaywarden.desk.postfix import PostfixTools
from relaywarden.desk.service import Desk
from relaywarden.devstack.stack import Stack
from relaywarden.policy import load_policy
from relaywarden.store import RedisStore, connect
from relaywarden.web.app import CSP, create_app
from relaywarden.web.routes import PAGE_GROUPS
from tests.desk import PASSWORDS, desk_policy, hold

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
XSS_SUBJECT = "<script>alert('subject')</script>"
XSS_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def desk_file(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return desk_policy(stack, tmp_path_factory.mktemp("web") / "desk.toml")


def make_app(
    stack: Stack, policy_file: Path, *, prefix: str = "rw", tools: PostfixTools | None = None
):  # type: ignore[no-untyped-def]
    policy = load_policy(policy_file)
    desk = Desk.from_policy(policy, stack.redis_url)
    if prefix != "rw" or tools is not None:
        store = RedisStore(connect(stack.redis_url, 5.0), prefix)
        desk = Desk(store, policy.quarantine, tools or desk.postfix)
    return create_app(desk, policy.web)


def login(client: TestClient, user: str) -> str:
    """Log in through the form; returns the session's CSRF token."""
    form = client.get("/login")
    token = CSRF.search(form.text)
    assert token
    done = client.post(
        "/login",
        data={"username": user, "password": PASSWORDS[user], "csrf": token.group(1)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    page = client.get("/")
    found = CSRF.search(page.text)
    assert found
    return found.group(1)


@pytest.fixture(scope="module")
def app(stack: Stack, desk_file: Path):  # type: ignore[no-untyped-def]
    return make_app(stack, desk_file)


@pytest.fixture
def operator(app) -> Iterator[tuple[TestClient, str]]:  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        yield client, login(client, "olga")


@pytest.fixture
def viewer(app) -> Iterator[tuple[TestClient, str]]:  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        yield client, login(client, "victor")


def held(stack: Stack, qid: str) -> bool:
    assert stack.postfix is not None
    return any(e["queue_id"] == qid for e in stack.postfix.hold_queue())


def test_every_page_and_api_refuses_the_unauthenticated(app) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(app)
    # Each page group's own routes as well: recent FastAPI keeps included routers
    # as one entry of app.routes instead of copying their routes up.
    every = [*app.routes, *(r for group in PAGE_GROUPS for r in group.router.routes)]
    routes = [r for r in every if isinstance(r, APIRoute) and r.path != "/login"]
    assert len(routes) >= 15
    for route in routes:
        path = route.path.replace("{queue_id}", "4jbxmr3LvPzJ9Nx").replace("{action}", "release")
        for method in route.methods:
            response = client.request(method, path, follow_redirects=False)
            if path.startswith("/api/"):
                assert response.status_code == 401, (method, path)
            else:
                assert response.status_code == 303, (method, path)
                assert response.headers["location"] == "/login"


def test_headers_forbid_script_and_framing(operator) -> None:  # type: ignore[no-untyped-def]
    client, _ = operator
    response = client.get("/")
    assert response.headers["content-security-policy"] == CSP
    assert "default-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script" not in response.text


def test_wrong_password_and_login_without_csrf_are_refused(app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        token = CSRF.search(client.get("/login").text)
        assert token
        bad = client.post(
            "/login", data={"username": "olga", "password": "nope", "csrf": token.group(1)}
        )
        assert bad.status_code == 401
        assert "rw_session" not in client.cookies
        no_csrf = client.post("/login", data={"username": "olga", "password": PASSWORDS["olga"]})
        assert no_csrf.status_code == 403
        assert "rw_session" not in client.cookies


def test_login_attempts_are_rate_limited(stack: Stack, tmp_path: Path) -> None:
    policy = desk_policy(stack, tmp_path / "throttle.toml", web="login_attempts = 3")
    # Its own key prefix: the failures here must not lock out the other tests.
    app = make_app(stack, policy, prefix="rwthrottle")
    with TestClient(app) as client:
        codes = []
        for _ in range(4):
            token = CSRF.search(client.get("/login").text)
            assert token
            codes.append(
                client.post(
                    "/login", data={"username": "olga", "password": "guess", "csrf": token.group(1)}
                ).status_code
            )
        assert codes == [401, 401, 401, 429]
        token = CSRF.search(client.get("/login").text)
        assert token
        right = client.post(
            "/login",
            data={"username": "olga", "password": PASSWORDS["olga"], "csrf": token.group(1)},
        )
        assert right.status_code == 429  # even the right password waits out the window


def test_xss_in_subject_from_and_display_name_is_escaped(stack: Stack, operator) -> None:  # type: ignore[no-untyped-def]
    client, _ = operator
    qid = hold(
        stack,
        XSS_SUBJECT,
        client="203.0.113.31",
        from_header=f'From: "{XSS_NAME}" <promo@shop.example>'.encode(),
        body=b"<html><body><script>alert('body')</script><b>bold offer</b></body></html>\r\n",
        extra_headers=[b"MIME-Version: 1.0", b"Content-Type: text/html; charset=utf-8"],
    )
    listing = client.get("/", params={"vps": "203.0.113.31"})
    view = client.get(f"/message/{qid}")
    assert view.status_code == 200
    for html in (listing.text, view.text):
        assert qid in html
        assert "<script" not in html and "<img" not in html
        assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;" in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # An HTML body is shown as its text: script dropped, tags removed, nothing rendered.
    assert "alert(&#39;body&#39;)" not in view.text and "<b>bold" not in view.text
    assert "bold offer" in view.text and "HTML only" in view.text
    # The sender's rate-limit windows are on the page (plan "default" for an unknown VPS).
    assert "vps:203.0.113.31 · plan default" in view.text and "Limit hits:" in view.text


def test_operator_releases_from_the_web_and_it_is_audited(stack: Stack, operator) -> None:  # type: ignore[no-untyped-def]
    client, csrf = operator
    qid = hold(stack, "web release", client="203.0.113.32")
    page = client.get(f"/message/{qid}")
    assert 'id="release"' in page.text
    done = client.post(
        f"/message/{qid}/release", data={"csrf": csrf, "reason": "checked"}, follow_redirects=False
    )
    assert done.status_code == 303
    stack.sink.wait_for(lambda m: m.subject == "web release", timeout=60)
    audit = client.get("/api/audit").json()
    entry = next(a for a in audit if a["target"] == qid)
    assert (entry["actor"], entry["via"], entry["reason"]) == ("olga", "web", "checked")


def test_post_without_csrf_token_is_refused(stack: Stack, operator) -> None:  # type: ignore[no-untyped-def]
    client, _ = operator
    qid = hold(stack, "csrf target", client="203.0.113.33")
    assert client.post(f"/message/{qid}/delete", data={}).status_code == 403
    assert client.post(f"/message/{qid}/delete", data={"csrf": "forged"}).status_code == 403
    assert client.post(f"/api/quarantine/{qid}/delete", json={}).status_code == 403
    assert held(stack, qid)


def test_viewer_sees_no_actions_and_a_forged_post_is_refused(stack: Stack, viewer) -> None:  # type: ignore[no-untyped-def]
    client, csrf = viewer
    qid = hold(stack, "viewer target", client="203.0.113.34")
    page = client.get(f"/message/{qid}")
    assert page.status_code == 200 and "viewer target" in page.text
    assert "<button" in page.text  # only the log-out button
    assert 'id="release"' not in page.text and 'id="delete"' not in page.text
    assert "/blocks/lift" not in client.get("/blocks").text
    assert client.post(f"/message/{qid}/release", data={"csrf": csrf}).status_code == 403
    assert (
        client.post(f"/api/quarantine/{qid}/release", json={}, headers={"X-CSRF-Token": csrf})
    ).status_code == 403
    assert (
        client.post(
            "/blocks", data={"csrf": csrf, "subject": "vps:203.0.113.34", "reason": "x"}
        ).status_code
        == 403
    )
    assert held(stack, qid)


def test_block_add_and_lift_from_the_web(operator) -> None:  # type: ignore[no-untyped-def]
    client, csrf = operator
    added = client.post(
        "/blocks",
        data={
            "csrf": csrf,
            "subject": "vps:198.51.100.77",
            "reason": "<b>spam run</b>",
            "duration": "2h",
        },
        follow_redirects=False,
    )
    assert added.status_code == 303
    page = client.get("/blocks").text
    assert "vps:198.51.100.77" in page and "&lt;b&gt;spam run&lt;/b&gt;" in page
    status = client.get("/api/status", params={"subject": "vps:198.51.100.77"}).json()
    assert status["blocks"][0]["reason"] == "<b>spam run</b>"
    lifted = client.post("/blocks/lift", data={"csrf": csrf, "subject": "vps:198.51.100.77"})
    assert lifted.status_code == 200
    assert "vps:198.51.100.77" not in client.get("/blocks").text
    actions = [(a["action"], a["target"]) for a in client.get("/api/audit").json()]
    assert ("block", "vps:198.51.100.77") in actions and ("unblock", "vps:198.51.100.77") in actions


BULK_ID = re.compile(r'name="ids" value="([^"]+)"')
BULK_COUNT = re.compile(r'name="count" value="(\d+)"')


def test_bulk_delete_per_vps_from_the_web(stack: Stack, operator) -> None:  # type: ignore[no-untyped-def]
    client, csrf = operator
    ids = {hold(stack, f"web bulk {n}", client="203.0.113.35") for n in range(2)}
    listing = client.get("/", params={"vps": "203.0.113.35"}).text
    shown = BULK_ID.findall(listing)
    count = BULK_COUNT.search(listing)
    assert count and {i.split("/")[1] for i in shown} >= ids
    form = {"csrf": csrf, "ids": shown, "count": count.group(1), "action": "delete"}
    unconfirmed = client.post("/bulk", data=form)
    assert unconfirmed.status_code == 400
    assert all(held(stack, q) for q in ids)
    done = client.post("/bulk", data={**form, "confirm": "yes"}, follow_redirects=False)
    assert done.status_code == 303
    assert not any(held(stack, q) for q in ids)


def recording_tools(tmp_path: Path) -> tuple[PostfixTools, Path]:
    """Postfix commands that only write down that they were called."""
    log = tmp_path / "calls.log"
    for tool in ("postsuper", "postqueue", "postcat"):
        script = tmp_path / tool
        script.write_text(f'#!/bin/sh\necho "$0 $*" >> {log}\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return PostfixTools("/nonexistent", str(tmp_path)), log


@pytest.mark.parametrize("bad", ["ALL", "-", "-d", "..%2Fx", "ABC;rm", "deferred", "%24(id)"])
def test_bad_queue_ids_refused_before_any_command(
    stack: Stack, desk_file: Path, tmp_path: Path, bad: str
) -> None:
    tools, log = recording_tools(tmp_path)
    app = make_app(stack, desk_file, tools=tools)
    with TestClient(app) as client:
        csrf = login(client, "olga")
        log.unlink(missing_ok=True)  # the listing after login may read the queue
        responses = [
            client.get(f"/message/{bad}"),
            client.get(f"/api/quarantine/{bad}"),
            client.post(f"/message/{bad}/release", data={"csrf": csrf}),
            client.post(f"/api/quarantine/{bad}/delete", json={}, headers={"X-CSRF-Token": csrf}),
        ]
    assert all(400 <= r.status_code < 500 for r in responses), [r.status_code for r in responses]
    assert not log.exists()


def test_fuzzed_api_requests_never_get_a_5xx(stack: Stack, desk_file: Path) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    # Its own key prefix: fuzzed blocks must not reach the running milter.
    app = make_app(stack, desk_file, prefix="rwfuzz")
    with TestClient(app) as client:
        csrf = login(client, "olga")
        cookie = f"rw_session={client.cookies['rw_session']}"
        schema = schemathesis.openapi.from_asgi(
            "/api/openapi.json", app, headers={"Cookie": cookie}
        )
        headers = {"Cookie": cookie, "X-CSRF-Token": csrf}
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 9
        seen: list[int] = []
        for operation in operations:

            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def check(case) -> None:  # type: ignore[no-untyped-def]
                response = case.call(headers=headers)
                seen.append(response.status_code)
                assert response.status_code < 500, (case.method, case.path, response.text[:300])

            check()
    # The fuzzer got past validation (2xx) and was refused (4xx), many times over.
    assert len(seen) > 100
    assert any(200 <= c < 300 for c in seen) and any(400 <= c < 500 for c in seen)
