"""The leader-election decision: who may take the Lease, judged on the candidate's own clock;
and when a leader whose renewals stall steps down."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from claimops_operator.leadership import (
    LeaseElector,
    LeaseLost,
    LeaseRecord,
    LeaseTimings,
    Move,
    next_move,
    observe,
)

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


class _SlowLeaseApi:
    """A Lease API whose answers to this replica's renewals slow down, then stop: the first
    write answers at once, the second after `slow` seconds, the later ones never (until the
    test ends)."""

    def __init__(self, slow: float) -> None:
        self.slow = slow
        self.writes = 0
        self.second_round_began: float | None = None
        self.released = threading.Event()
        self.lease = self._lease("op-a", "1")

    @staticmethod
    def _lease(holder: str, version: str) -> SimpleNamespace:
        spec = SimpleNamespace(holder_identity=holder, renew_time="", lease_transitions=0, acquire_time="")
        return SimpleNamespace(spec=spec, metadata=SimpleNamespace(resource_version=version))

    def read_namespaced_lease(self, name: str, namespace: str, **_: object) -> SimpleNamespace:
        if self.writes == 1 and self.second_round_began is None:
            self.second_round_began = time.monotonic()
        return self.lease

    def replace_namespaced_lease(
        self, name: str, namespace: str, body: dict[str, object], **_: object
    ) -> SimpleNamespace:
        self.writes += 1
        if self.writes == 2:
            time.sleep(self.slow)
        elif self.writes > 2:
            self.released.wait(30)
        self.lease = self._lease("op-a", str(self.writes + 1))
        return self.lease


def test_a_leader_steps_down_within_the_renew_deadline_of_when_its_last_renewal_began() -> None:
    # A standby counts the duration from when it saw the renewal, so no earlier than the write;
    # the write may land long before its answer comes back, so the leader's deadline must run
    # from when the round began, or a slow answer lets the leader outlive the deadline.
    timings = LeaseTimings(duration=3, renew_deadline=2, retry_period=0.5)
    api = _SlowLeaseApi(slow=1.2)
    elector = LeaseElector(cast(Any, api), "claimops", "claimops-operator", "op-a", timings)
    assert elector.try_once() is True

    async def keep() -> float:
        with pytest.raises(LeaseLost, match="not renewed"):
            await elector.keep()
        return time.monotonic()

    try:
        stepped_down = asyncio.run(keep())
    finally:
        api.released.set()
    assert api.second_round_began is not None
    assert stepped_down - api.second_round_began <= timings.renew_deadline + 0.3
