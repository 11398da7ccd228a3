"""Reconcilers: read what a resource owns, ask the pure decision function, carry actions out.

One reconcile of a PipelineRun reads its Jobs (with their results, and for active Jobs what
their pods wait for) and the ModelDeployments of its model, calls
:func:`claimops_operator.pipeline.decide` and applies the actions; one reconcile of a
ModelDeployment reads its Deployment (while it rolls out, also what its pods wait for) and
rollback Job and calls :func:`claimops_operator.serving.decide_serving`. Reconciles of one
object never overlap.
Progress lives in the objects' status and in deterministically named children, so the operator
keeps no state that a restart could lose.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import kopf

from claimops_stages.api_names import MODEL_DEPLOYMENT, PIPELINE_RUN

from . import builders
from .admission import Order, StageSlots, order_of
from .config import OperatorConfig
from .gateway import KubernetesGateway
from .metrics import (
    QUEUE_WAIT,
    RECONCILE_DURATION,
    RECONCILE_ERRORS,
    RUNS_BY_PHASE,
    RUNS_QUEUED,
    STAGE_DURATION,
    STAGE_SLOTS_IN_USE,
)
from .pipeline import (
    ApplyModelDeployment,
    CreateJob,
    Decision,
    DeleteJob,
    EmitEvent,
    ObservedJob,
    RunPhase,
    RunRef,
    StageState,
    decide,
    is_terminal,
    model_name,
)
from .serving import (
    ApplyServer,
    CreateRollbackJob,
    ServingDecision,
    decide_serving,
    rollback_job_name,
)

log = logging.getLogger("claimops.operator")

#: How often every unfinished run is reconciled even without events (a safety net for a
#: missed watch-event; the normal path is event-driven).
RESYNC_SECONDS = 60.0
ERROR_RETRY_SECONDS = 5.0

Key = tuple[str, str]


class _Serialized:
    """One reconcile per object at a time, coalesced triggers, bounded concurrency, re-runs.

    A burst of watch-events for one object (a Job's pod starting, its status, its completion)
    becomes at most one reconcile running and one more after it: that one reads fresh state,
    so the triggers in between need no reconcile of their own.
    """

    def __init__(self, limit: int) -> None:
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()
        self._requeues: dict[Key, asyncio.TimerHandle] = {}
        self._slots = asyncio.Semaphore(limit)

    async def run(
        self, key: Key, kind: str, body: Callable[[], Awaitable[None]], again: Callable[[], Awaitable[None]]
    ) -> None:
        """Run `body`, or, when one runs for `key`, once more after it; on an error, `again`
        (the whole reconcile) later."""
        if key in self._running:
            self._dirty.add(key)
            return
        self._running.add(key)
        try:
            while True:
                self._dirty.discard(key)
                async with self._slots:
                    await self._once(key, kind, body, again)
                if key not in self._dirty:
                    return
        finally:
            self._running.discard(key)

    async def _once(
        self, key: Key, kind: str, body: Callable[[], Awaitable[None]], again: Callable[[], Awaitable[None]]
    ) -> None:
        started = time.perf_counter()
        try:
            await body()
        except Exception as exc:
            # Come back later; the next watch-event or the requeue retries from scratch.
            RECONCILE_ERRORS.labels(kind=f"{kind}:{type(exc).__name__}").inc()
            log.exception("reconcile of %s %s/%s failed; retrying in %.0f s", kind, *key, ERROR_RETRY_SECONDS)
            self.requeue(key, ERROR_RETRY_SECONDS, again)
        finally:
            RECONCILE_DURATION.observe(time.perf_counter() - started)

    def requeue(self, key: Key, delay: float, again: Callable[[], Awaitable[None]]) -> None:
        self.cancel(key)
        loop = asyncio.get_running_loop()
        self._requeues[key] = loop.call_later(max(delay, 0.05), lambda: asyncio.ensure_future(again()))

    def cancel(self, key: Key) -> None:
        handle = self._requeues.pop(key, None)
        if handle is not None:
            handle.cancel()

    def forget(self, key: Key) -> None:
        self.cancel(key)
        self._dirty.discard(key)


class _Reconciler(ABC):
    """What both controllers share: the gateway, the settings, and reconciles serialized per
    object (see _Serialized); a subclass says what one reconcile of its kind does."""

    #: The resource's kind, as the reconcile metrics and logs name it.
    kind: ClassVar[str]

    def __init__(self, gateway: KubernetesGateway, settings: OperatorConfig) -> None:
        self.gateway = gateway
        self.settings = settings
        self._serial = _Serialized(settings.max_concurrent_reconciles)

    async def _emit(self, obj: Mapping[str, Any], event: EmitEvent) -> None:
        """Post an Event about `obj`. kopf.event needs the per-object context kopf sets for its
        own handlers; a reconcile started by the resync loop or a requeue timer has none
        (LookupError), and then the Event goes out through the gateway instead."""
        try:
            kopf.event(cast(Any, obj), type=event.type, reason=event.reason, message=event.message)
        except LookupError:
            await asyncio.to_thread(self.gateway.post_event, obj, event.type, event.reason, event.message)

    async def reconcile(self, namespace: str, name: str) -> None:
        await self._serial.run(
            (namespace, name),
            self.kind,
            lambda: self._reconcile(namespace, name),
            lambda: self.reconcile(namespace, name),
        )

    def forget(self, namespace: str, name: str) -> None:
        self._serial.forget((namespace, name))

    @abstractmethod
    async def _reconcile(self, namespace: str, name: str) -> None:
        """Read the object and what it owns, decide, act (one pass; _Serialized re-runs it)."""


def _place_in_line(run: Mapping[str, Any]) -> tuple[Key, Order]:
    """A PipelineRun's key and its place in the stage-slot queue (creation order)."""
    meta = run["metadata"]
    key = (meta["namespace"], meta["name"])
    return key, order_of(*key, str(meta.get("creationTimestamp", "")))


def _finished(run: Mapping[str, Any]) -> bool:
    """Terminal for its current spec (a changed spec of a finished run is a rerun)."""
    status = run.get("status") or {}
    return is_terminal(status) and status.get("observedGeneration") == run["metadata"].get("generation")


class RunReconciler(_Reconciler):
    """Reconciles PipelineRuns."""

    kind = PIPELINE_RUN.kind

    def __init__(self, gateway: KubernetesGateway, settings: OperatorConfig) -> None:
        super().__init__(gateway, settings)
        self._phases: dict[Key, str] = {}
        self._seen_phases: set[str] = set()
        self._timed_jobs: set[str] = set()
        self.slots = StageSlots(settings.max_concurrent_stage_jobs)

    async def seed_slots(self) -> None:
        """Before the first reconcile: the stage Jobs running and the runs queued now, so a
        restarted (or newly leading) operator keeps both the limit and the queue's order."""
        held: dict[Key, list[str]] = {}
        queued: dict[Key, Order] = {}
        for namespace in self._namespaces():
            held.update(await asyncio.to_thread(self.gateway.active_stage_jobs, namespace))
            for run in await asyncio.to_thread(self.gateway.list_runs, namespace):
                if (run.get("status") or {}).get("phase") == RunPhase.QUEUED:
                    key, order = _place_in_line(run)
                    queued[key] = order
        self.slots.seed(held, queued)
        self._show_slots()
        log.info(
            "stage slots: %d of %d in use, %d run(s) queued", self.slots.in_use, self.slots.limit, len(queued)
        )

    def _namespaces(self) -> list[str | None]:
        """The namespaces watched (None: all)."""
        return list(self.settings.namespaces) or [None]

    async def _note_unfinished_runs(self) -> None:
        """Tell the slots which unfinished runs exist now (a fresh list, not the watch: an
        earlier run's event may not have been handled yet)."""
        unfinished: dict[Key, Order] = {}
        for namespace in self._namespaces():
            for run in await asyncio.to_thread(self.gateway.list_runs, namespace):
                if not _finished(run):
                    key, order = _place_in_line(run)
                    unfinished[key] = order
        self._wake(self.slots.note_unfinished(unfinished))

    def _show_slots(self) -> None:
        STAGE_SLOTS_IN_USE.set(self.slots.in_use)
        RUNS_QUEUED.set(self.slots.queued)

    def _wake(self, keys: list[Key]) -> None:
        """Queued runs a slot freed for: reconcile them now, oldest first."""
        for namespace, name in keys:
            self._serial.requeue((namespace, name), 0, functools.partial(self.reconcile, namespace, name))

    async def _reconcile(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        body = await asyncio.to_thread(self.gateway.get_run, namespace, name)
        if body is None:
            self.forget(namespace, name)
            return
        spec, status = body.get("spec", {}), body.get("status") or {}
        _, order = _place_in_line(body)
        if _finished(body):
            self._track_phase(key, status)
            self._wake(self.slots.settle(key, order, (), queued=False))  # a finished run holds none
            return
        # Only a Running stage can have lost its Job: otherwise no pod read is needed.
        stage_running = any(s.get("state") == StageState.RUNNING for s in status.get("stages") or [])
        jobs = await asyncio.to_thread(
            self.gateway.observed_jobs, namespace, name, body["metadata"].get("uid"), stage_running
        )
        deployments = await asyncio.to_thread(self.gateway.observed_deployments, namespace, model_name(spec))
        meta = body["metadata"]
        run = RunRef(
            name,
            namespace,
            int(meta.get("generation", 1)),
            str(meta.get("uid", "")),
            str(meta.get("creationTimestamp", "")),
        )
        active = [j.name for j in jobs if j.state == "Active"]

        def decide_now() -> Decision:
            return decide(
                run,
                spec,
                status,
                jobs,
                deployments,
                datetime.now(UTC),
                serving_enabled=self.settings.serving_enabled,
                slot=self.slots.ticket(key, order, active),
            )

        decision = decide_now()
        if any(isinstance(action, CreateJob) for action in decision.actions):
            # About to take a slot: an earlier run not reconciled yet may be owed it.
            await self._note_unfinished_runs()
            decision = decide_now()
        # From this ticket to settle nothing awaits: no other reconcile can take the same slot.
        waited = self.slots.waited(key)
        holding = [*active, *(a.job_name for a in decision.actions if isinstance(a, CreateJob))]
        if is_terminal(decision.status):  # its Jobs are done or being deleted
            holding = []
        self._wake(self.slots.settle(key, order, holding, decision.queued))
        self._show_slots()
        if waited is not None and not decision.queued:
            QUEUE_WAIT.observe(waited)
        await self._carry_out(body, decision)
        if decision.status != status:
            await asyncio.to_thread(self.gateway.patch_run_status, namespace, name, status, decision.status)
        self._observe_jobs(jobs)
        self._track_phase(key, decision.status)
        if decision.requeue_after is not None:
            self._serial.requeue(key, decision.requeue_after, lambda: self.reconcile(namespace, name))

    async def _clear_predecessor_job(self, namespace: str, job_name: str, uid: str | None) -> None:
        """A Job of that name that this run does not own is a leftover of a deleted run of the
        same name (orphaned, or not yet collected): delete it; its deletion event brings the
        run back here to create its own."""
        owners = await asyncio.to_thread(self.gateway.job_owner_uids, namespace, job_name)
        if owners is not None and uid not in owners:
            log.info("job %s belongs to a deleted run of the same name: deleting it", job_name)
            await asyncio.to_thread(self.gateway.delete_job, namespace, job_name)

    async def _carry_out(self, body: dict[str, Any], decision: Decision) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        for action in decision.actions:
            if isinstance(action, CreateJob):
                manifest = builders.stage_job(
                    run=name,
                    namespace=namespace,
                    stage=action.stage,
                    attempt=action.attempt,
                    job_name=action.job_name,
                    inputs=action.inputs,
                    deadline_seconds=action.deadline_seconds,
                    config=self.settings,
                    image=action.image,
                )
                kopf.append_owner_reference(manifest, owner=cast(Any, body))  # kopf takes plain dicts
                created = await asyncio.to_thread(self.gateway.create_job, manifest)
                log.info("job %s %s", action.job_name, "created" if created else "already exists")
                if not created:
                    await self._clear_predecessor_job(namespace, action.job_name, meta.get("uid"))
            elif isinstance(action, DeleteJob):
                await asyncio.to_thread(self.gateway.delete_job, namespace, action.job_name)
            elif isinstance(action, ApplyModelDeployment):
                manifest = builders.model_deployment(
                    run=action.run_name,
                    namespace=namespace,
                    role=action.role,
                    model_name=action.model_name,
                    version=action.version,
                    release=action.release,
                )
                await asyncio.to_thread(self.gateway.apply_model_deployment, manifest)
            elif isinstance(action, EmitEvent):
                await self._emit(body, action)

    def _observe_jobs(self, jobs: list[ObservedJob]) -> None:
        for job in jobs:
            if (
                job.state != "Active"
                and job.name not in self._timed_jobs
                and job.started_at
                and job.finished_at
            ):
                self._timed_jobs.add(job.name)
                seconds = (job.finished_at - job.started_at).total_seconds()
                STAGE_DURATION.labels(stage=job.stage, result=job.state).observe(max(seconds, 0.0))

    def _track_phase(self, key: Key, status: dict[str, Any]) -> None:
        self._phases[key] = str(status.get("phase") or "Pending")
        counts: dict[str, int] = {}
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        # A phase no run is in any more reads 0, not its last count.
        self._seen_phases.update(counts)
        for phase in self._seen_phases:
            RUNS_BY_PHASE.labels(phase=phase).set(counts.get(phase, 0))

    def forget(self, namespace: str, name: str) -> None:
        super().forget(namespace, name)
        self._phases.pop((namespace, name), None)
        self._wake(self.slots.forget((namespace, name)))
        self._show_slots()

    async def resync_forever(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            namespaces: list[str | None] = list(self.settings.namespaces) or [None]
            for namespace in namespaces:
                try:
                    runs = await asyncio.to_thread(self.gateway.list_runs, namespace)
                except Exception:
                    log.exception("resync listing failed")
                    continue
                for run in runs:
                    if not is_terminal(run.get("status") or {}):
                        meta = run["metadata"]
                        await self.reconcile(meta["namespace"], meta["name"])


class ServingReconciler(_Reconciler):
    """Reconciles ModelDeployments: a model server Deployment + Service per resource."""

    kind = MODEL_DEPLOYMENT.kind

    async def _reconcile(self, namespace: str, name: str) -> None:
        mdep = await asyncio.to_thread(self.gateway.get_model_deployment, namespace, name)
        if mdep is None:
            self.forget(namespace, name)
            return
        rollout = await asyncio.to_thread(self.gateway.observed_rollout, namespace, name)
        request = ((mdep.get("spec") or {}).get("rollback") or {}).get("requestId")
        rollback = None
        if request:
            wanted = rollback_job_name(name, str(request))
            jobs = await asyncio.to_thread(self.gateway.rollback_jobs, namespace, name)
            rollback = next((j for j in jobs if j.name == wanted), None)
        waiting = None
        if (
            rollout is not None
            and min(rollout.available_replicas, rollout.updated_replicas) < rollout.replicas
        ):
            # Some replica is not up: its pod may wait for an image that never comes.
            waiting = await asyncio.to_thread(self.gateway.model_server_waiting, namespace, name)
        decision = decide_serving(
            mdep, rollout, rollback, datetime.now(UTC), self.settings.stage_image, waiting
        )
        await self._carry_out(mdep, decision)
        status = mdep.get("status") or {}
        if decision.status != status:
            await asyncio.to_thread(
                self.gateway.patch_model_deployment_status, namespace, name, status, decision.status
            )

    async def _carry_out(self, mdep: dict[str, Any], decision: ServingDecision) -> None:
        meta = mdep["metadata"]
        for action in decision.actions:
            if isinstance(action, ApplyServer):
                deployment = builders.model_server_deployment(
                    mdep=mdep,
                    version=action.target.version,
                    alias=action.target.alias,
                    restart_token=action.target.restart_token,
                    spec_hash=action.spec_hash,
                    config=self.settings,
                )
                service = builders.model_server_service(mdep)
                for manifest in (deployment, service):
                    kopf.append_owner_reference(manifest, owner=cast(Any, mdep))
                    await asyncio.to_thread(self.gateway.apply, manifest)
            elif isinstance(action, CreateRollbackJob):
                job = builders.rollback_job(
                    mdep_name=meta["name"],
                    namespace=meta["namespace"],
                    job_name=action.job_name,
                    inputs=action.inputs,
                    config=self.settings,
                )
                kopf.append_owner_reference(job, owner=cast(Any, mdep))
                await asyncio.to_thread(self.gateway.create_job, job)
            elif isinstance(action, EmitEvent):
                await self._emit(mdep, action)
