"""Kopf handlers: thin wiring from watch-events to the reconcilers in :mod:`.reconcile`.

Events on a PipelineRun, on its Jobs and on the ModelDeployments it asked for lead to a
reconcile of that run; events on a ModelDeployment, its Deployment and its rollback Jobs lead
to a reconcile of that ModelDeployment; a pod of either whose container cannot start leads to
a reconcile of its owner. Watch-event handlers keep no Kopf progress annotations, so the
operator writes nothing to an object but its status.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server

from claimops_stages.api_names import (
    GROUP,
    LABEL_MANAGED_BY,
    LABEL_MODEL_DEPLOYMENT,
    LABEL_RUN,
    MANAGED_BY,
    MODELDEPLOYMENTS,
    PIPELINERUNS,
    REQUESTED_BY_RUN,
    VERSION,
)

from .config import OperatorConfig
from .gateway import KubernetesGateway
from .leadership import LeaseElector, LeaseTimings
from .pods import first_waiting, start_failure
from .reconcile import RunReconciler, ServingReconciler

log = logging.getLogger("claimops.operator")


@dataclass
class Reconcilers:
    """The process's reconcilers, made at startup and kept in Kopf's memo."""

    runs: RunReconciler
    serving: ServingReconciler
    resync: asyncio.Task[None]


def _of(memo: kopf.Memo) -> Reconcilers:
    # Kopf runs every startup handler to completion before it starts watching, so each
    # watch-event handler finds them.
    return cast(Reconcilers, memo.reconcilers)


def _api_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        # Read $KUBECONFIG now: the client library reads it once, when first imported.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


_metrics_served: set[int] = set()


def serve_metrics(port: int) -> None:
    """Start /metrics once per process (`python -m` starts it before the election, `kopf run`
    at startup)."""
    if port and port not in _metrics_served:
        start_http_server(port)
        _metrics_served.add(port)


def leader_elector(settings: OperatorConfig) -> LeaseElector | None:
    """The Lease elector of this replica, or None when leader election is off."""
    if not settings.leader_lease:
        return None
    timings = LeaseTimings(
        float(settings.lease_duration_seconds),
        float(settings.lease_renew_deadline_seconds),
        float(settings.lease_retry_period_seconds),
    )
    return LeaseElector(
        client.CoordinationV1Api(_api_client()),
        settings.leader_lease_namespace,
        settings.leader_lease,
        settings.identity,
        timings,
    )


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In the cluster: the pod's ServiceAccount; elsewhere: $KUBECONFIG, read at login time."""
    info = kopf.login_with_service_account(**kwargs)
    if info is not None:
        # Said once at start: which identity every API call carries (checked by the e2e layer).
        log.info("logged in with the in-cluster ServiceAccount token (namespace %s)", info.default_namespace)
        return info
    info = kopf.login_with_kubeconfig(**kwargs)
    log.info("logged in with the kubeconfig %s", os.environ.get("KUBECONFIG") or "~/.kube/config")
    return info


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_config = OperatorConfig.from_env()
    # Least privilege: no CRD or namespace scanning, no peering objects, no log-to-Event posting.
    settings.scanning.disabled = True
    settings.peering.standalone = True
    settings.posting.loggers = False
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    serve_metrics(operator_config.metrics_port)
    # Reads and writes run in worker threads (the client is synchronous): enough of them that
    # many runs reconcile at once instead of queueing behind the default handful.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=operator_config.max_concurrent_reconciles, thread_name_prefix="k8s")
    )
    gateway = KubernetesGateway(_api_client())
    runs = RunReconciler(gateway, operator_config)
    await runs.seed_slots()
    resync = asyncio.get_running_loop().create_task(runs.resync_forever())
    memo.reconcilers = Reconcilers(runs, ServingReconciler(gateway, operator_config), resync)
    log.info("claimops operator started: %s", operator_config)


@kopf.on.cleanup()
async def stop_background(memo: kopf.Memo, **_: Any) -> None:
    if "reconcilers" in memo:  # startup may have failed before making them
        _of(memo).resync.cancel()


@kopf.on.event(GROUP, VERSION, PIPELINERUNS)
async def pipelinerun_changed(type: str, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    if namespace is None:  # PipelineRuns are namespaced; kopf types this for cluster objects too
        return
    if type == "DELETED":
        _of(memo).runs.forget(namespace, name)
        return
    await _of(memo).runs.reconcile(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_MANAGED_BY: MANAGED_BY})
async def job_changed(labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    if namespace is not None:
        await _owner_changed(_of(memo), namespace, labels)


async def _owner_changed(reconcilers: Reconcilers, namespace: str, labels: kopf.Labels) -> None:
    """A child (Job, pod) changed: reconcile the run or ModelDeployment its labels name."""
    if LABEL_RUN in labels:
        await reconcilers.runs.reconcile(namespace, labels[LABEL_RUN])
    if LABEL_MODEL_DEPLOYMENT in labels:
        await reconcilers.serving.reconcile(namespace, labels[LABEL_MODEL_DEPLOYMENT])


@kopf.on.event(GROUP, VERSION, MODELDEPLOYMENTS)
async def model_deployment_changed(
    type: str,
    annotations: kopf.Annotations,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    if namespace is None:
        return
    reconcilers = _of(memo)
    if type == "DELETED":
        reconcilers.serving.forget(namespace, name)
    else:
        await reconcilers.serving.reconcile(namespace, name)
    if REQUESTED_BY_RUN in annotations:  # the run waiting for this role to be Ready
        await reconcilers.runs.reconcile(namespace, annotations[REQUESTED_BY_RUN])


@kopf.on.event(
    "apps",
    "v1",
    "deployments",
    labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_MODEL_DEPLOYMENT: kopf.PRESENT},
)
async def model_server_changed(labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    if namespace is not None:
        await _of(memo).serving.reconcile(namespace, labels[LABEL_MODEL_DEPLOYMENT])


@kopf.on.event("", "v1", "pods", labels={LABEL_MANAGED_BY: MANAGED_BY})
async def pod_changed(
    body: kopf.Body, labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    # Job and Deployment events cover pods that run and end; only a container that cannot
    # start (ImagePullBackOff, CreateContainerConfigError, ...) needs the pod itself.
    if namespace is not None and start_failure(first_waiting([body])) is not None:
        await _owner_changed(_of(memo), namespace, labels)
