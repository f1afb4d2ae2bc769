"""`make demo`'s burst: one VPS stopped at its limit while the others keep sending."""

from __future__ import annotations

import pytest

from relaywarden.demo import BLASTER, DEMO_POLICY, NEIGHBOURS, burst_table, run_burst
from relaywarden.devstack.stack import Stack

pytestmark = pytest.mark.e2e


def test_demo_burst_is_stopped_for_one_vps_only() -> None:
    with Stack(DEMO_POLICY) as stack:
        tally = run_burst(stack, rounds=4)
    assert tally[BLASTER.label] == {"delivered": 5, "tempfailed": 3}
    for case in NEIGHBOURS:
        assert tally[case.label] == {"delivered": 4}
    assert "VPS blasting a list" in burst_table(tally)
