"""The desk in a real headless Chromium (Debian's), against `relaywarden web` and
the real stack: an operator releases a held message; a viewer cannot act.

Also takes the README's screenshots: into a temp dir, or into the folder named
by RELAYWARDEN_SCREENSHOTS (`make screenshots` sets docs/screenshots), so a test
run never rewrites files in the checkout."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaywarden.devstack.stack import Stack
from relaywarden.devstack.web import WebProcess
from tests.desk import PASSWORDS, desk_policy, hold

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SHOTS_ENV = "RELAYWARDEN_SCREENSHOTS"


@pytest.fixture(scope="module")
def web(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    workdir = tmp_path_factory.mktemp("browser")
    policy = desk_policy(stack, workdir / "desk.toml")
    with WebProcess(policy, stack.redis_url, workdir) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


def log_in(browser, web: WebProcess, user: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(web.url + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_url(web.url + "/")
    return context, page


def test_operator_finds_opens_and_releases_a_held_message(
    stack: Stack, web: WebProcess, browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    hold(stack, "Spring sale: 70% off everything", client="203.0.113.41", login="bob")
    hold(stack, "Last chance <b>today</b>", client="203.0.113.41", login="bob")
    qid = hold(stack, "Browser release check", client="203.0.113.42", login="carol")
    context, page = log_in(browser, web, "olga")
    try:
        page.fill("input[name=q]", "Browser release")
        page.click("form.filters button[type=submit]")
        link = page.locator(f"a:text('{qid}')")
        assert link.count() == 1
        page.goto(web.url + "/?since=24h")
        shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "quarantine-list.png"), full_page=False)
        page.locator(f"a:text('{qid}')").first.click()
        page.wait_for_url(re.compile(rf".*/message/{qid}.*"))
        assert page.locator(".subject").inner_text() == "Browser release check"
        assert "bulk promotion under review" in page.content()
        page.screenshot(path=str(shots / "message-view.png"), full_page=True)
        page.fill(".actions form:first-child input[name=reason]", "looks legitimate")
        page.click("#release")
        page.wait_for_url(re.compile(rf".*/message/{qid}$"))
        assert page.locator("#state").inner_text().startswith("released")
        stack.sink.wait_for(lambda m: m.subject == "Browser release check", timeout=60)
    finally:
        context.close()


def test_viewer_sees_no_action_buttons_and_a_forged_post_is_refused(
    stack: Stack, web: WebProcess, browser
) -> None:  # type: ignore[no-untyped-def]
    qid = hold(stack, "Viewer browser check", client="203.0.113.43")
    context, page = log_in(browser, web, "victor")
    try:
        page.goto(f"{web.url}/message/{qid}")
        assert page.locator(".subject").inner_text() == "Viewer browser check"
        assert page.locator("#release").count() == 0 and page.locator("#delete").count() == 0
        csrf = page.locator("input[name=csrf]").first.get_attribute("value")
        assert csrf
        forged = page.request.post(f"{web.url}/message/{qid}/release", form={"csrf": csrf})
        assert forged.status == 403
        api = page.request.post(
            f"{web.url}/api/quarantine/{qid}/release", data={}, headers={"X-CSRF-Token": csrf}
        )
        assert api.status == 403
        assert stack.postfix is not None
        assert any(e["queue_id"] == qid for e in stack.postfix.hold_queue())
    finally:
        context.close()
