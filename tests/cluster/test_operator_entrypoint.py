"""A smoke test of the Kopf entrypoint in-process with `kopf.testing.KopfRunner` (Kopf's own
way to test an operator module), against the real control plane."""

from __future__ import annotations

import json
import time

import pytest
from kopf.testing import KopfRunner

from tests.cluster.test_operator import condition, get_run, run_manifest
from tests.harness.control_plane import ControlPlane
from tests.harness.mlflow_server import MlflowServer
from tests.harness.node_standin import NodeStandIn

pytestmark = pytest.mark.cluster


def test_kopf_runner_reconciles_a_run_to_its_failure_reason(
    control_plane: ControlPlane,
    namespace: str,
    node_standin: NodeStandIn,
    claimops_crds: tuple[str, ...],
    cluster_mlflow: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    monkeypatch.setenv("CLAIMOPS_MLFLOW_TRACKING_URI", cluster_mlflow.url)
    monkeypatch.setenv("CLAIMOPS_METRICS_PORT", "0")
    manifest = run_manifest("smoke", failureInjection=["TrainingError"], retries=0)
    args = ["run", "--standalone", "--namespace", namespace, "-m", "claimops_operator.handlers"]
    with KopfRunner(args, timeout=120) as runner:
        control_plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            run = get_run(control_plane, namespace, "smoke")
            if condition(run, "Succeeded").get("status") == "False":
                break
            time.sleep(0.5)
    assert runner.exception is None
    assert runner.exit_code == 0
    assert condition(run, "Succeeded")["reason"] == "CITestsFailed"
    assert condition(run, "CIPassed")["status"] == "False"
    # Watch-event handlers leave no Kopf bookkeeping on the object: only status is written.
    meta = run["metadata"]
    assert not [k for k in meta.get("annotations", {}) if "kopf" in k]
    assert not meta.get("finalizers")
