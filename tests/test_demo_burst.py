"""`make demo`'s burst: one VPS stopped at its limit while the others keep sending."""

from __future__ import annotations

import pytest

from relaywarden.demo import BLASTER, DEMO_POLICY, NEIGHBOURS, burst_table, run_burst
from relaywarden.devstack.stack import Stack

pytestmark = pytest.mark.e2e


def test_demo_burst_is_stopped_for_one_vps_only() -> None:
    with Stack(DEMO_POLICY) as stack:
        tally = run_burst(stack)
    blaster = tally[BLASTER.label]
    assert blaster["delivered"] == 5
    assert sum(blaster.values()) == 20 and blaster["tempfailed"] + blaster["rejected"] == 15
    assert blaster["rejected"] >= 1  # repeated hits: blocked automatically
    for case in NEIGHBOURS:
        assert tally[case.label] == {"delivered": 5}
    assert "VPS blasting a list" in burst_table(tally)
