"""Leader election over a ``coordination.k8s.io/v1`` Lease: one replica reconciles, the others
stand by and take over when the leader dies or stops renewing.

Kopf's own peering is no substitute: replicas of equal priority all freeze (Kopf's docs,
"Peering"), and a higher-priority peer is noticed only after the peering lifetime. This is
client-go's ``leaderelection`` in small:

* the holder renews ``spec.renewTime`` every ``retry_period``; every write carries the
  resourceVersion it read, so of two candidates writing at once exactly one wins;
* a candidate judges expiry by *its own* clock: a record it has watched unchanged for
  ``duration`` seconds is expired, whatever the timestamps in it say (no clock-skew trust);
* a leader that could not renew for ``renew_deadline`` (< ``duration``) seconds steps down by
  exiting the process before any standby may take over, so two leaders never overlap;
* a leader that stops cleanly empties ``holderIdentity``, so a standby takes over at once.

:func:`next_move` is the pure decision; :class:`LeaseElector` does the API calls.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .metrics import LEADER, LEADER_TRANSITIONS

log = logging.getLogger("claimops.operator")


@dataclass(frozen=True)
class LeaseTimings:
    duration: float = 9.0
    renew_deadline: float = 6.0
    retry_period: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError(
                "lease timings must satisfy 0 < retry period < renew deadline < duration, "
                f"got {self.retry_period} < {self.renew_deadline} < {self.duration}"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says, as the election needs it."""

    holder: str
    renew_time: str
    transitions: int
    resource_version: str
    acquire_time: str = ""

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.holder, self.renew_time, self.transitions)


@dataclass(frozen=True)
class Observation:
    """The record a candidate last saw change, and when (its monotonic clock)."""

    key: tuple[str, str, int]
    seen_at: float


class Move(Enum):
    CREATE = "create"  # no Lease yet: create it, holding it
    TAKE = "take"  # free or expired: write ourselves in (one more transition)
    RENEW = "renew"  # ours: renew it
    WAIT = "wait"  # someone else holds it and renews


def observe(previous: Observation | None, record: LeaseRecord | None, now: float) -> Observation | None:
    """The observation after reading ``record`` at ``now``: kept while the record is unchanged."""
    if record is None:
        return None
    if previous is not None and previous.key == record.key:
        return previous
    return Observation(record.key, now)


def next_move(
    record: LeaseRecord | None, me: str, observed: Observation | None, now: float, timings: LeaseTimings
) -> Move:
    if record is None:
        return Move.CREATE
    if record.holder == me:
        return Move.RENEW
    if not record.holder:
        return Move.TAKE
    if observed is not None and observed.key == record.key and now - observed.seen_at >= timings.duration:
        return Move.TAKE
    return Move.WAIT


def _micro_time(moment: datetime) -> str:
    # MicroTime: RFC 3339 with microseconds.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: Any) -> LeaseRecord:
    spec = lease.spec
    return LeaseRecord(
        holder=spec.holder_identity or "",
        renew_time=_text(spec.renew_time),
        transitions=int(spec.lease_transitions or 0),
        resource_version=str(lease.metadata.resource_version),
        acquire_time=_text(spec.acquire_time),
    )


def _text(moment: Any) -> str:
    return _micro_time(moment) if isinstance(moment, datetime) else str(moment or "")


class LeaseLost(Exception):
    """This replica no longer holds the Lease (another took it, or renewing failed too long)."""


class LeaseElector:
    """Acquires and keeps one Lease for ``identity``; see the module doc."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaseTimings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.timings, self.clock = timings, clock
        # Its own thread: renewals never queue behind reconciles in the default executor.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        #: No call may hang past the renew deadline (a dead connection would otherwise block).
        self._timeout = timings.renew_deadline
        self._observed: Observation | None = None
        self._resource_version: str | None = None
        self._transitions = 0
        LEADER.labels(identity=identity).set(0)

    def _read(self) -> LeaseRecord | None:
        try:
            return _record(
                self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _body(self, transitions: int, acquired: str, resource_version: str | None) -> dict[str, Any]:
        # A plain body: the client's model would send datetimes without the microseconds the
        # API's MicroTime wants.
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(self.timings.duration),
                "acquireTime": acquired,
                "renewTime": _micro_time(datetime.now(UTC)),
                "leaseTransitions": transitions,
            },
        }

    def _replace(self, body: dict[str, Any]) -> Any:
        return self.api.replace_namespaced_lease(
            self.name, self.namespace, cast(Any, body), _request_timeout=self._timeout
        )

    async def _round(self) -> bool | None:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self.try_once)

    def try_once(self) -> bool | None:
        """One round (blocking I/O): True when this replica holds the Lease after it, False when
        another replica does, None when a concurrent write made the round inconclusive."""
        record = self._read()
        now = self.clock()
        self._observed = observe(self._observed, record, now)
        move = next_move(record, self.identity, self._observed, now, self.timings)
        stamp = _micro_time(datetime.now(UTC))
        try:
            if record is None:
                lease = self.api.create_namespaced_lease(
                    self.namespace, cast(Any, self._body(0, stamp, None)), _request_timeout=self._timeout
                )
            elif move is Move.WAIT:
                return False
            elif move is Move.RENEW:
                body = self._body(record.transitions, record.acquire_time or stamp, record.resource_version)
                lease = self._replace(body)
            else:
                body = self._body(record.transitions + 1, stamp, record.resource_version)
                lease = self._replace(body)
        except ApiException as exc:
            if exc.status == 409:  # another candidate wrote between our read and write
                return None
            raise
        written = _record(lease)
        self._resource_version, self._transitions = written.resource_version, written.transitions
        if move is not Move.RENEW:
            log.info("leader election: %s holds lease %s/%s", self.identity, self.namespace, self.name)
            LEADER_TRANSITIONS.inc()
        return True

    async def acquire(self) -> None:
        """Wait until this replica holds the Lease."""
        log.info("leader election: %s is waiting for lease %s/%s", self.identity, self.namespace, self.name)
        while True:
            try:
                if await self._round():
                    LEADER.labels(identity=self.identity).set(1)
                    return
            except Exception as exc:  # the API server is away: keep trying, say why
                log.warning("leader election: reading lease %s failed: %s", self.name, exc)
            # Jitter keeps standbys from writing in lock-step.
            await asyncio.sleep(self.timings.retry_period * (1 + 0.2 * random.random()))

    async def keep(self) -> None:
        """Renew until the Lease is lost; then raise :class:`LeaseLost`."""
        last_renewed = self.clock()
        while True:
            await asyncio.sleep(self.timings.retry_period)
            # A round may not outlast the renew deadline: the step-down must come before any
            # standby's expiry judgement.
            started = self.clock()
            left = self.timings.renew_deadline - (started - last_renewed)
            try:
                held = await asyncio.wait_for(self._round(), timeout=max(left, 0.1))
            except Exception as exc:
                log.warning(
                    "leader election: renewing lease %s failed: %s",
                    self.name,
                    str(exc) or f"no answer within {max(left, 0.1):.1f}s",
                )
                held = None
            if held:
                # From when the round began, not when its answer came: the write landed in
                # between, and a standby counts from no earlier than that.
                last_renewed = started
            elif held is False:
                LEADER.labels(identity=self.identity).set(0)
                raise LeaseLost(f"another replica took lease {self.namespace}/{self.name}")
            if self.clock() - last_renewed >= self.timings.renew_deadline:
                LEADER.labels(identity=self.identity).set(0)
                raise LeaseLost(
                    f"lease {self.namespace}/{self.name} not renewed for {self.timings.renew_deadline:g}s"
                )

    def release(self) -> None:
        """Give the Lease up (clean stop), so a standby takes over without waiting it out."""
        LEADER.labels(identity=self.identity).set(0)
        if self._resource_version is None:
            return
        body = self._body(self._transitions, "", self._resource_version)
        body["spec"].update(holderIdentity=None, leaseDurationSeconds=1, acquireTime=None)
        try:
            self._replace(body)
            log.info("leader election: %s released lease %s", self.identity, self.name)
        except ApiException as exc:  # taken already, or the API is away: it expires anyway
            log.warning("leader election: releasing lease %s failed: %s", self.name, exc)
