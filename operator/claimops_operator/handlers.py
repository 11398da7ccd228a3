"""Kopf handlers: thin wiring from watch-events to one reconcile of a PipelineRun.

A reconcile reads what the run owns (Jobs, their results, ModelDeployments), asks the pure
:func:`claimops_operator.pipeline.decide` what to do, and carries the actions out. Events on
the run, on its Jobs and on ModelDeployments all lead to the same reconcile, like a
controller-runtime reconciler; reconciles of one run never overlap. Progress lives in the
run's status and in the deterministically named Jobs, so the operator keeps no state that a
restart could lose (Kopf's own progress annotations are not used: watch-event handlers need
none).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server

from . import builders
from .builders import GROUP, LABEL_RUN, MANAGED_BY, VERSION
from .config import OperatorConfig
from .gateway import KubernetesGateway
from .metrics import RECONCILE_DURATION, RECONCILE_ERRORS, RUNS_BY_PHASE, STAGE_DURATION
from .pipeline import (
    ApplyModelDeployment,
    CreateJob,
    Decision,
    DeleteJob,
    EmitEvent,
    ObservedJob,
    RunRef,
    decide,
    is_terminal,
)

log = logging.getLogger("claimops.operator")

#: How often every unfinished run is reconciled even without events (a safety net for a
#: missed watch-event; the normal path is event-driven).
RESYNC_SECONDS = 60.0
REQUESTED_BY_RUN = f"{GROUP}/requested-by-run"


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Reconciler:
    """Reconciles PipelineRuns; one instance per operator process."""

    def __init__(self, gateway: KubernetesGateway, settings: OperatorConfig) -> None:
        self.gateway = gateway
        self.settings = settings
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._requeues: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._phases: dict[tuple[str, str], str] = {}
        self._seen_phases: set[str] = set()
        self._timed_jobs: set[str] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrent_reconciles)

    async def reconcile(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with self._slots, lock:
            started = time.perf_counter()
            try:
                await self._reconcile(namespace, name)
            except Exception as exc:
                # Come back later; the next watch-event or the requeue retries from scratch.
                RECONCILE_ERRORS.labels(kind=type(exc).__name__).inc()
                log.exception("reconcile of %s/%s failed; retrying in 5 s", namespace, name)
                self._requeue(key, 5.0)
            finally:
                RECONCILE_DURATION.observe(time.perf_counter() - started)

    async def _reconcile(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        body = await asyncio.to_thread(self.gateway.get_run, namespace, name)
        if body is None:
            self.forget(namespace, name)
            return
        spec, status = body.get("spec", {}), body.get("status") or {}
        if is_terminal(status) and status.get("observedGeneration") == body["metadata"].get("generation"):
            self._track_phase(key, status)
            return
        jobs = await asyncio.to_thread(self.gateway.observed_jobs, namespace, name)
        model_name = (spec.get("model") or {}).get("name", "claim-settlement")
        deployments = await asyncio.to_thread(self.gateway.observed_deployments, namespace, model_name)
        meta = body["metadata"]
        decision = decide(
            RunRef(
                name, namespace, int(meta.get("generation", 1)), _parse_time(meta.get("creationTimestamp"))
            ),
            spec,
            status,
            jobs,
            deployments,
            datetime.now(UTC),
            serving_enabled=self.settings.serving_enabled,
        )
        await self._carry_out(body, decision)
        if decision.status != status:
            await asyncio.to_thread(self.gateway.patch_run_status, namespace, name, status, decision.status)
        self._observe_jobs(jobs)
        self._track_phase(key, decision.status)
        if decision.requeue_after is not None:
            self._requeue(key, decision.requeue_after)

    async def _carry_out(self, body: dict[str, Any], decision: Decision) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        timeouts = body.get("spec", {}).get("timeouts") or {}
        for action in decision.actions:
            if isinstance(action, CreateJob):
                manifest = builders.stage_job(
                    run=name,
                    namespace=namespace,
                    stage=action.stage,
                    attempt=action.attempt,
                    job_name=action.job_name,
                    inputs=action.inputs,
                    deadline_seconds=int(timeouts.get("stageSeconds", 1800)),
                    config=self.settings,
                )
                kopf.append_owner_reference(manifest, owner=cast(Any, body))  # kopf takes plain dicts
                created = await asyncio.to_thread(self.gateway.create_job, manifest)
                log.info("job %s %s", action.job_name, "created" if created else "already exists")
            elif isinstance(action, DeleteJob):
                await asyncio.to_thread(self.gateway.delete_job, namespace, action.job_name)
            elif isinstance(action, ApplyModelDeployment):
                manifest = builders.model_deployment(
                    run=action.run_name,
                    namespace=namespace,
                    role=action.role,
                    model_name=action.model_name,
                    version=action.version,
                )
                await asyncio.to_thread(self.gateway.apply_model_deployment, manifest)
            elif isinstance(action, EmitEvent):
                kopf.event(cast(Any, body), type=action.type, reason=action.reason, message=action.message)

    def _requeue(self, key: tuple[str, str], delay: float) -> None:
        previous = self._requeues.pop(key, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        self._requeues[key] = loop.call_later(
            max(delay, 0.05), lambda: asyncio.ensure_future(self.reconcile(*key))
        )

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

    def _track_phase(self, key: tuple[str, str], status: dict[str, Any]) -> None:
        self._phases[key] = str(status.get("phase") or "Pending")
        counts: dict[str, int] = {}
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        # A phase no run is in any more reads 0, not its last count.
        self._seen_phases.update(counts)
        for phase in self._seen_phases:
            RUNS_BY_PHASE.labels(phase=phase).set(counts.get(phase, 0))

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        handle = self._requeues.pop(key, None)
        if handle is not None:
            handle.cancel()
        self._locks.pop(key, None)
        self._phases.pop(key, None)

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


_reconciler: Reconciler | None = None


def reconciler() -> Reconciler:
    if _reconciler is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return _reconciler


def _api_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _reconciler
    operator_config = OperatorConfig.from_env()
    # Least privilege: no CRD or namespace scanning, no peering objects, no log-to-Event posting.
    settings.scanning.disabled = True
    settings.peering.standalone = True
    settings.posting.loggers = False
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    if operator_config.metrics_port:
        start_http_server(operator_config.metrics_port)
    _reconciler = Reconciler(KubernetesGateway(_api_client()), operator_config)
    _background.add(asyncio.get_running_loop().create_task(_reconciler.resync_forever()))
    log.info("claimops operator started: %s", operator_config)


_background: set[asyncio.Task[None]] = set()


@kopf.on.cleanup()
async def stop_background(**_: Any) -> None:
    for task in _background:
        task.cancel()


@kopf.on.event(GROUP, VERSION, "pipelineruns")
async def pipelinerun_changed(type: str, namespace: str | None, name: str, **_: Any) -> None:
    if namespace is None:  # PipelineRuns are namespaced; kopf types this for cluster objects too
        return
    if type == "DELETED":
        reconciler().forget(namespace, name)
        return
    await reconciler().reconcile(namespace, name)


@kopf.on.event(
    "batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_RUN: kopf.PRESENT}
)
async def stage_job_changed(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
    if namespace is not None:
        await reconciler().reconcile(namespace, labels[LABEL_RUN])


def _requested_by_a_run(annotations: kopf.Annotations, **_: Any) -> bool:
    return REQUESTED_BY_RUN in annotations


@kopf.on.event(GROUP, VERSION, "modeldeployments", when=_requested_by_a_run)
async def model_deployment_changed(annotations: kopf.Annotations, namespace: str | None, **_: Any) -> None:
    if namespace is not None:
        await reconciler().reconcile(namespace, annotations[REQUESTED_BY_RUN])
