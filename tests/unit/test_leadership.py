"""The leader-election decision: who may take the Lease, judged on the candidate's own clock."""

from __future__ import annotations

import pytest

from claimops_operator.leadership import LeaseRecord, LeaseTimings, Move, next_move, observe

TIMINGS = LeaseTimings(duration=10, renew_deadline=7, retry_period=2)


def record(holder: str, renewed: str = "02:00:00", transitions: int = 1) -> LeaseRecord:
    return LeaseRecord(holder, f"2026-12-02T{renewed}.000000Z", transitions, "41")


def test_no_lease_is_created_and_our_own_is_renewed() -> None:
    assert next_move(None, "op-a", None, 0.0, TIMINGS) is Move.CREATE
    mine = record("op-a")
    assert next_move(mine, "op-a", observe(None, mine, 0.0), 0.0, TIMINGS) is Move.RENEW


def test_a_released_lease_is_taken_at_once() -> None:
    free = record("")
    assert next_move(free, "op-b", observe(None, free, 0.0), 0.0, TIMINGS) is Move.TAKE


def test_a_renewing_holder_is_never_overtaken() -> None:
    seen = None
    for step in range(20):  # the holder renews every 2 s, the standby looks every 2 s
        now = step * 2.0
        lease = record("op-a", renewed=f"02:00:{int(now):02d}")
        seen = observe(seen, lease, now)
        assert next_move(lease, "op-b", seen, now, TIMINGS) is Move.WAIT


def test_a_silent_holder_is_overtaken_after_the_duration_on_the_candidates_clock() -> None:
    lease = record("op-a")
    seen = observe(None, lease, 100.0)
    assert next_move(lease, "op-b", observe(seen, lease, 109.9), 109.9, TIMINGS) is Move.WAIT
    assert next_move(lease, "op-b", observe(seen, lease, 110.0), 110.0, TIMINGS) is Move.TAKE


def test_a_candidate_that_just_started_waits_a_full_duration_whatever_the_timestamps_say() -> None:
    # The record's renewTime is an hour old, but clocks differ between nodes: only what this
    # candidate watched counts.
    stale = record("op-a", renewed="01:00:00")
    seen = observe(None, stale, 500.0)
    assert next_move(stale, "op-b", seen, 500.0, TIMINGS) is Move.WAIT
    assert next_move(stale, "op-b", seen, 510.0, TIMINGS) is Move.TAKE


def test_the_renew_deadline_comes_before_the_duration() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaseTimings(duration=5, renew_deadline=7, retry_period=2)
