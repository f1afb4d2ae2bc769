"""What the milter asks Postfix to send and to wait for (negotiated per socket),
and the `[milter] workers` setting."""

from __future__ import annotations

import Milter
import pytest

from relaywarden.milter.adapter import RelayWardenMilter
from relaywarden.policy import PolicyError, policy_from_dict


def negotiated(cls: type[RelayWardenMilter]) -> int:
    """The protocol bits pymilter agrees to when Postfix offers every one."""
    return 0x1FFFFF & ~cls.protocol_mask()


def test_postfix_does_not_send_helo_which_no_check_reads() -> None:
    assert negotiated(RelayWardenMilter) & Milter.P_NOHELO


@pytest.mark.parametrize("listen", ["inet:9900@127.0.0.1", "inet6:9900@::1"])
def test_over_tcp_data_is_answered(listen: str) -> None:
    cls = RelayWardenMilter.for_listen(listen)
    assert not negotiated(cls) & Milter.P_NR_DATA  # the answer carries the ACK (Nagle)
    assert not negotiated(cls) & Milter.P_NODATA


def test_over_a_unix_socket_data_needs_no_answer() -> None:
    cls = RelayWardenMilter.for_listen("unix:/run/relaywarden/milter.sock")
    assert negotiated(cls) & Milter.P_NR_DATA
    assert issubclass(cls, RelayWardenMilter)
    # Everything else is negotiated as over TCP.
    assert negotiated(cls) & ~Milter.P_NR_DATA == negotiated(RelayWardenMilter)


def test_callbacks_that_decide_are_still_sent_and_answered() -> None:
    bits = negotiated(RelayWardenMilter)
    for skipped in (Milter.P_NOCONNECT, Milter.P_NOMAIL, Milter.P_NORCPT, Milter.P_NOHDRS,
                    Milter.P_NOBODY):  # fmt: skip
        assert not bits & skipped
    for answered in (Milter.P_NR_MAIL, Milter.P_NR_RCPT):
        assert not bits & answered


@pytest.mark.parametrize(("value", "count"), [(1, 1), (4, 4), ("auto", None)])
def test_workers_setting(value: int | str, count: int | None) -> None:
    milter = policy_from_dict({"milter": {"workers": value}}).milter
    assert milter.worker_count() == (count or len(__import__("os").sched_getaffinity(0)))


@pytest.mark.parametrize("value", [0, -1, 1000, "many"])
def test_workers_setting_refused(value: int | str) -> None:
    with pytest.raises(PolicyError) as exc:
        policy_from_dict({"milter": {"workers": value}})
    assert "milter.workers" in str(exc.value.errors)
