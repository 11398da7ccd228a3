"""A PipelineRun deleted and created again under the same name: Job names are deterministic
(<run>-<stage>-<attempt>), so the new run meets its predecessor's Jobs. It must neither adopt
their results nor wait for ever behind them (found on kind: `kubectl delete cpr X` then
`kubectl apply` of the same example adopted the old run's model version)."""

from __future__ import annotations

import json
import time

import pytest

from tests.cluster.test_operator import get_run, run_manifest, stage, wait_for
from tests.conftest import OperatorFactory
from tests.harness.control_plane import ControlPlane
from tests.harness.node_standin import NodeStandIn

pytestmark = pytest.mark.cluster


def job_owner_uids(cp: ControlPlane, namespace: str, name: str) -> list[str]:
    job = json.loads(
        cp.kubectl("get", "job", name, "-n", namespace, "-o", "json", check=False).stdout or "{}"
    )
    return [ref["uid"] for ref in job.get("metadata", {}).get("ownerReferences", [])]


def test_a_run_recreated_under_the_same_name_runs_its_own_jobs(
    control_plane: ControlPlane, namespace: str, node_standin: NodeStandIn, start_operator: OperatorFactory
) -> None:
    cp = control_plane
    operator = start_operator(namespace, CLAIMOPS_SERVING_ENABLED="false")
    manifest = json.dumps(run_manifest("again"))
    cp.kubectl("create", "-n", namespace, "-f", "-", input=manifest)
    first = wait_for(
        cp, namespace, "again", "ci-tests done", lambda r: bool(r.get("status")) and stage(r, "ci-tests")["state"] == "Succeeded",
        operator_log=operator.log,
    )  # fmt: skip
    old_uid = first["metadata"]["uid"]
    assert job_owner_uids(cp, namespace, "again-ci-tests-1") == [old_uid]
    # Orphaned, the old Jobs stay (nothing collects them): the worst case for the new run.
    cp.kubectl("delete", "cpr", "again", "-n", namespace, "--cascade=orphan", "--wait=true")
    cp.kubectl("create", "-n", namespace, "-f", "-", input=manifest)
    new_uid = get_run(cp, namespace, "again")["metadata"]["uid"]
    assert new_uid != old_uid
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job_owner_uids(cp, namespace, "again-ci-tests-1") != [new_uid]:
        time.sleep(0.5)
    assert job_owner_uids(cp, namespace, "again-ci-tests-1") == [new_uid], operator.log()[-3000:]
    run = wait_for(
        cp, namespace, "again", "ci-tests done again",
        lambda r: bool(r.get("status")) and stage(r, "ci-tests")["state"] == "Succeeded", operator_log=operator.log,
    )  # fmt: skip
    assert stage(run, "ci-tests")["job"] == "again-ci-tests-1"
