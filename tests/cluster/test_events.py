"""Events from reconciles kopf did not start (the resync loop, requeue timers): kopf.event
needs the per-object context kopf sets for its own handlers and raises LookupError without
it, which once left a run stuck retrying the same reconcile. Outside that context the
operator posts the Event itself; this checks that path against the real API server."""

from __future__ import annotations

import asyncio
import json

import pytest

from claimops_operator.config import OperatorConfig
from claimops_operator.gateway import KubernetesGateway
from claimops_operator.pipeline import EmitEvent
from claimops_operator.reconcile import RunReconciler
from tests.cluster.test_operator import create, run_manifest
from tests.harness.control_plane import ControlPlane

pytestmark = pytest.mark.cluster


def test_a_reconcile_outside_kopf_still_posts_its_events(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    create(cp, namespace, run_manifest("evented", cancel=True))
    run = json.loads(cp.kubectl("get", "cpr", "evented", "-n", namespace, "-o", "json").stdout)
    reconciler = RunReconciler(KubernetesGateway(cp.api_client()), OperatorConfig())
    # A plain asyncio task, as the resync loop runs it: no kopf posting context.
    asyncio.run(reconciler._emit(run, EmitEvent("Normal", "GateWaiting", "Waiting for manual approval")))
    events = json.loads(
        cp.kubectl(
            "get", "events", "-n", namespace, "--field-selector=involvedObject.name=evented", "-o", "json"
        ).stdout
    )["items"]
    posted = [(e["reason"], e["message"], e["involvedObject"]["uid"]) for e in events]
    assert ("GateWaiting", "Waiting for manual approval", run["metadata"]["uid"]) in posted
