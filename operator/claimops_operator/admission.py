"""Admission of work: at most ``limit`` stage Jobs run at once over all PipelineRuns, and runs
that want one beyond that wait in creation order (phase ``Queued``).

The operator keeps this in memory and rebuilds it at start from what the cluster shows (active
stage Jobs, runs in phase Queued: :meth:`StageSlots.seed`), so a restart or a failover keeps
both the limit and the order. Reconciles of different runs interleave only at ``await``
points; :meth:`StageSlots.ticket` and :meth:`StageSlots.settle` are called with no ``await``
between them and the decision, so two runs never take the same free slot.

Runs created at once are reconciled in whatever order their events and threads happen to run,
so a later run may come to a free slot before an earlier one was ever reconciled. Before a run
takes a slot, the operator therefore lists the runs that exist (:meth:`StageSlots.note_unfinished`):
an earlier one this operator has not yet settled counts as waiting ahead of it.

Rollback Jobs and model-server Deployments take no slot: a rollback must never wait behind
training, and a server runs as long as it serves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

#: (namespace, name) of a PipelineRun.
Key = tuple[str, str]
#: Creation order: (creationTimestamp, namespace, name). Timestamps have one-second
#: resolution; runs created in the same second go by name.
Order = tuple[str, str, str]


def order_of(namespace: str, name: str, created: str) -> Order:
    return (created, namespace, name)


@dataclass(frozen=True)
class Ticket:
    """Whether a run may start a stage Job now, and why not."""

    admitted: bool
    limit: int
    in_use: int
    ahead: int  # runs created before this one that wait for a slot or were not yet reconciled


@dataclass
class _Waiting:
    order: Order
    since: float


@dataclass
class StageSlots:
    limit: int
    clock: Callable[[], float] = time.monotonic
    _held: dict[Key, frozenset[str]] = field(default_factory=dict)
    _waiting: dict[Key, _Waiting] = field(default_factory=dict)
    _settled: set[Key] = field(default_factory=set)  # runs this operator has reconciled
    _unseen: dict[Key, Order] = field(default_factory=dict)  # unfinished, not yet reconciled

    @property
    def in_use(self) -> int:
        return sum(len(jobs) for jobs in self._held.values())

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def seed(self, held: Mapping[Key, Iterable[str]], queued: Mapping[Key, Order]) -> None:
        """What the cluster shows at start: active stage Jobs by run, and runs in phase Queued."""
        for key, jobs in held.items():
            if names := frozenset(jobs):
                self._held[key] = names
        for key, order in queued.items():
            self._waiting.setdefault(key, _Waiting(order, self.clock()))

    def note_unfinished(self, runs: Mapping[Key, Order]) -> list[Key]:
        """The unfinished runs that exist now (a fresh list). Those this operator has not yet
        reconciled may want a slot any moment: they count as waiting, each in its place.
        Returns the queued runs to reconcile now, because one they waited behind is gone."""
        before = self._unseen
        self._unseen = {
            key: order
            for key, order in runs.items()
            if key not in self._settled and key not in self._held and key not in self._waiting
        }
        return self._next_in_line() if before.keys() - self._unseen.keys() else []

    def ticket(self, key: Key, order: Order, holding: Iterable[str] = ()) -> Ticket:
        """May ``key`` start a Job now? ``holding``: its Jobs still active as just observed (a
        Job of its own that has finished frees its slot for its next stage at once)."""
        in_use = self.in_use - len(self._held.get(key, ())) + len(frozenset(holding))
        free = self.limit - in_use
        in_line = [w.order for other, w in self._waiting.items() if other != key]
        in_line += [o for other, o in self._unseen.items() if other != key]
        ahead = sum(1 for earlier in in_line if earlier < order)
        return Ticket(admitted=free > 0 and ahead < free, limit=self.limit, in_use=in_use, ahead=ahead)

    def settle(self, key: Key, order: Order, holding: Iterable[str], queued: bool) -> list[Key]:
        """Record what a reconcile of ``key`` ended with: the Jobs it holds (active or just
        created) and whether it waits for a slot. Returns the queued runs to reconcile now,
        because a slot is free for them."""
        was_waiting = key in self._waiting
        # Runs behind one not yet reconciled may have been held back for it.
        was_unseen = self._unseen.pop(key, None) is not None
        self._settled.add(key)
        before = self.in_use
        names = frozenset(holding)
        if names:
            self._held[key] = names
        else:
            self._held.pop(key, None)
        if queued:
            self._waiting.setdefault(key, _Waiting(order, self.clock()))
        else:
            self._waiting.pop(key, None)
        freed = self.in_use < before or ((was_waiting or was_unseen) and not queued and not names)
        return self._next_in_line() if freed else []

    def waited(self, key: Key) -> float | None:
        """Seconds ``key`` has been queued, or None."""
        waiting = self._waiting.get(key)
        return None if waiting is None else self.clock() - waiting.since

    def forget(self, key: Key) -> list[Key]:
        """A run was deleted: its slots and its place are free."""
        before = self.in_use
        self._held.pop(key, None)
        self._settled.discard(key)
        # A run that leaves the queue may have been woken for a slot it will never take, or
        # held others back before it was ever reconciled.
        was_waiting = self._waiting.pop(key, None) is not None
        was_unseen = self._unseen.pop(key, None) is not None
        return self._next_in_line() if self.in_use < before or was_waiting or was_unseen else []

    def _next_in_line(self) -> list[Key]:
        free = self.limit - self.in_use
        if free <= 0:
            return []
        in_line = sorted(self._waiting.items(), key=lambda item: item[1].order)
        return [key for key, _ in in_line[:free]]
