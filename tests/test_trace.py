"""The relay's trace token: what verifies, what does not, key rotation, and
forged-received knowing our own token."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from relaywarden import trace
from relaywarden.checks import Stage
from relaywarden.engine import decide
from relaywarden.identity import Inventory, identify
from relaywarden.message import message_from_bytes
from relaywarden.policy import PolicyError, policy_from_dict
from relaywarden.policy.trace import TraceSection
from relaywarden.trace.token import TraceCodec
from relaywarden.verdict import Action
from tests.fakedns import ZoneResolver
from tests.fakes import FakeStore

OLD = {"id": "k2025", "secret": "old-secret-0123456789-abcdefghijkl"}
NEW = {"id": "k2026", "secret": "new-secret-9876543210-zyxwvutsrqpo"}
WHEN = 1_795_000_000


def section(*keys: dict[str, str], sign_with: str = "", relay: str = "relay1") -> TraceSection:
    return TraceSection.model_validate({"keys": list(keys), "sign_with": sign_with, "relay": relay})


def test_a_token_verifies_back_to_relay_queue_id_and_time() -> None:
    sec = section(NEW)
    st = trace.stamp(sec, "4Fh9aQ2zYkx1", WHEN)
    assert st is not None
    info = trace.verify(st.token, sec)
    assert info == trace.TraceInfo("relay1", "4Fh9aQ2zYkx1", WHEN, "k2026")
    assert st.info == info


def test_the_token_is_short_url_and_header_safe_and_names_no_customer() -> None:
    st = trace.stamp(section(NEW), "4Fh9aQ2zYkx1", WHEN)
    assert st is not None
    assert len(st.token) <= 80
    assert set(st.token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_every_single_byte_change_is_refused() -> None:
    sec = section(NEW)
    st = trace.stamp(sec, "4Fh9aQ2zYkx1", WHEN)
    assert st is not None
    raw = base64.urlsafe_b64decode(st.token + "=" * (-len(st.token) % 4))
    for i in range(len(raw)):
        for flip in (0x01, 0x80):
            bad = bytearray(raw)
            bad[i] ^= flip
            forged = base64.urlsafe_b64encode(bytes(bad)).rstrip(b"=").decode()
            assert trace.verify(forged, sec) is None, (i, flip)


def test_a_token_with_another_queue_id_spliced_in_is_refused() -> None:
    sec = section(NEW)
    a = trace.stamp(sec, "AAAAAAAAAAAA", WHEN)
    b = trace.stamp(sec, "BBBBBBBBBBBB", WHEN)
    assert a is not None and b is not None
    raw_a = base64.urlsafe_b64decode(a.token + "==")
    raw_b = base64.urlsafe_b64decode(b.token + "==")
    spliced = raw_b[:-16] + raw_a[-16:]  # b's fields, a's tag
    assert trace.verify(base64.urlsafe_b64encode(spliced).decode(), sec) is None


def test_rotation_old_keys_still_verify_the_new_key_signs() -> None:
    before = section(OLD)
    old_token = trace.stamp(before, "OLD0001", WHEN)
    assert old_token is not None
    after = section(OLD, NEW, sign_with="k2026")
    new_token = trace.stamp(after, "NEW0001", WHEN)
    assert new_token is not None
    assert trace.verify(old_token.token, after) == trace.TraceInfo(
        "relay1", "OLD0001", WHEN, "k2025"
    )
    assert trace.verify(new_token.token, after) == trace.TraceInfo(
        "relay1", "NEW0001", WHEN, "k2026"
    )
    # Once the old key is dropped, its tokens no longer verify.
    assert trace.verify(old_token.token, section(NEW)) is None


def test_wrong_key_with_the_same_id_is_refused() -> None:
    st = trace.stamp(section(NEW), "4Fh9aQ2zYkx1", WHEN)
    assert st is not None
    impostor = section({"id": "k2026", "secret": "an-attacker-guess-0123456789abcdefgh"})
    assert trace.verify(st.token, impostor) is None


def test_a_token_signed_by_someone_else_under_an_unknown_key_id_is_refused() -> None:
    theirs = TraceCodec([("evil", "an-attacker-guess-0123456789abcdefgh")], "evil")
    assert trace.verify(theirs.make("relay1", "ABC123", WHEN), section(NEW)) is None


@pytest.mark.parametrize(
    "junk",
    ["", "=", "not a token", "A" * 500, "AQ", "AQVrMjAyNg", "☃☃☃", "AQ==", "\r\nX-Injected: 1"],
)
def test_junk_never_verifies_and_never_raises(junk: str) -> None:
    assert trace.verify(junk, section(NEW)) is None


def test_without_keys_nothing_is_stamped_and_nothing_verifies() -> None:
    assert trace.stamp(TraceSection(), "ABC123", WHEN) is None
    assert trace.verify("AQVrMjAyNg", TraceSection()) is None


@pytest.mark.parametrize(
    ("trace_table", "message"),
    [
        ({"keys": [{"id": "k1", "secret": "short"}]}, "at least 32 random characters"),
        ({"keys": [{"id": "k1", "secret": "a" * 40}]}, "at least 32 random characters"),
        ({"keys": [OLD, OLD]}, "unique"),
        ({"keys": [OLD], "sign_with": "k9"}, "not among the keys"),
        ({"keys": [{"id": "bad id!", "secret": OLD["secret"]}]}, "letters or digits"),
        ({"header": "X-Trace: evil"}, "header field name"),
    ],
)
def test_bad_trace_sections_are_refused_with_the_key(
    trace_table: dict[str, object], message: str
) -> None:
    with pytest.raises(PolicyError) as err:
        policy_from_dict({"trace": trace_table})
    text = "\n".join(err.value.errors)
    assert "trace" in text and message in text, text


# -- forged-received knows our token ------------------------------------------

CORPUS = Path(__file__).parent / "corpus"
POLICY = {
    "relay": {"hostnames": ["relay.example.net"], "networks": ["192.0.2.0/28"]},
    "plans": {"small": {"messages": ["100000/1m"]}},
    "customers": [
        {"id": "shop", "plan": "small", "networks": ["203.0.113.0/24"], "domains": ["shop.example"]}
    ],
    "checks": {"sender": {"enabled": False}},
    "trace": {"keys": [OLD, NEW], "sign_with": "k2026"},
}


def findings_of(extra: bytes) -> set[str]:
    policy = policy_from_dict(POLICY)
    raw = (CORPUS / "forged-received-relay.eml").read_bytes()
    msg = message_from_bytes(extra + raw, client_address="203.0.113.7")
    sender = identify(msg, Inventory(policy.customers))
    verdict = decide(msg, sender, policy, FakeStore(), ZoneResolver().session(), stage=Stage.EOM)
    names = {f.name for f in verdict.findings}
    assert verdict.action in (Action.ACCEPT, Action.QUARANTINE)
    return names


def test_received_naming_the_relay_without_our_token_is_forged() -> None:
    assert "forged-received" in findings_of(b"")


def test_received_naming_the_relay_with_a_valid_token_of_ours_is_not_forged() -> None:
    st = trace.stamp(policy_from_dict(POLICY).trace, "9ABCDEF01", WHEN)
    assert st is not None
    assert "forged-received" not in findings_of(f"X-RelayWarden-Trace: {st.token}\r\n".encode())


def test_a_made_up_or_foreign_token_does_not_excuse_a_forged_received() -> None:
    theirs = TraceCodec([("k2026", "an-attacker-guess-0123456789abcdefgh")], "k2026")
    token = theirs.make("relay1", "9ABCDEF01", WHEN)
    assert "forged-received" in findings_of(f"X-RelayWarden-Trace: {token}\r\n".encode())
