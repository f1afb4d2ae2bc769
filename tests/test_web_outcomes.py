"""The desk's outcomes and complaints pages: numbers against thresholds, the
findings explained, the 24-hour charts, a login's networks, complaints with
their metadata, everything from outside escaped. Real Redis of the e2e stack."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from relaywarden.complaints.service import take
from relaywarden.limits import scripts
from relaywarden.outcomes import counters
from relaywarden.policy import load_policy
from relaywarden.store import RedisStore, connect
from relaywarden.subjects import Subject
from tests.complaints_support import arf
from tests.desk import desk_policy
from tests.test_web import login, make_app

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
VPS = Subject("vps", "192.0.2.201")


@pytest.fixture(scope="module")
def viewer(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    path = desk_policy(stack, tmp_path_factory.mktemp("web-outcomes") / "desk.toml")
    policy = load_policy(path)
    store = RedisStore(connect(stack.redis_url, 5.0), "rw")
    keys, scopes = counters.increments_spec(
        "rw", {VPS: {"d": 16, "b": 24, "u": 24}}, policy.outcomes.window
    )
    scripts.run(
        store.client,
        lambda p: scripts.evalsha(p, "outcomes", ["rw:x", *keys], ["", json.dumps({"s": scopes})]),
        "test data",
    )
    hostile = b"Subject: <script>alert(1)</script>\r\nFrom: <a@b.example>\r\n\r\nhi\r\n"
    take(store, policy, arf(hostile, feedback_type="<b>abuse</b>"), "192.0.2.9")
    with TestClient(make_app(stack, path)) as client:
        login(client, "victor")
        yield client


def test_outcomes_page_shows_numbers_thresholds_and_why(viewer: TestClient) -> None:
    page = viewer.get("/outcomes", params={"subject": str(VPS)})
    assert page.status_code == 200
    text = page.text
    assert "<td>bounced</td><td>24</td><td>60%</td><td>30% and at least 20</td>" in text
    assert "24 of 40 delivery attempts bounced (60%)" in text
    assert text.count('<svg class="chart"') == 4
    api = viewer.get("/api/outcomes", params={"subject": str(VPS)}).json()
    assert api["counts"]["bounced"] == 24 and api["findings"][0]["name"] == "bounced"
    assert sum(api["per_hour"]["bounced"]) == 24


def test_other_subject_kinds_are_refused(viewer: TestClient) -> None:
    assert viewer.get("/api/outcomes", params={"subject": "sender:a@b.example"}).status_code == 400


def test_complaints_page_escapes_what_the_report_says(viewer: TestClient) -> None:
    page = viewer.get("/complaints")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;b&gt;abuse&lt;/b&gt;" in page.text and "unattributed" in page.text
    listed = viewer.get("/api/complaints").json()
    assert any(not c["attributed"] and "no trace token found" in c["problems"] for c in listed)
