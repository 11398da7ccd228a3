"""The chart's approvals admission policies (MutatingAdmissionPolicy + ValidatingAdmissionPolicy,
component ``approvals``) installed for one namespace of the test control plane, as `helm
install` installs them, and the identities tests decide as.

Every cluster-layer namespace gets them (tests/conftest.py), so a decision in any test is
recorded the way it is on a real installation: under the user the API server authenticated.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Sequence

from tests.harness import chart
from tests.harness.control_plane import ControlPlane, ControlPlaneError

#: The group the chart's approvals.approvers names by default (also the UI's users' group).
APPROVERS_GROUP = "claimops:operators"


def policy_manifests(namespace: str, *values: str) -> list[chart.Doc]:
    """The approvals policies and bindings of the chart rendered for `namespace` (helm flags
    in `values`, e.g. ``--set approvals.quorum=2``)."""
    docs = [d for d in chart.render(*values, namespace=namespace) if chart.component(d) == "approvals"]
    kinds = {d["kind"] for d in docs}
    expected = {
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    if kinds != expected:
        raise chart.ChartError(
            f"the chart's approvals component renders {sorted(kinds)}, expected {sorted(expected)}"
        )
    return docs


def install(cp: ControlPlane, namespace: str, *values: str, timeout: float = 30) -> list[chart.Doc]:
    """Apply the policies and wait until the API server enforces both (policies take effect
    asynchronously, each on its own: a server-side dry-run create must come back with
    spec.submitter, and one created already decided must be refused)."""
    docs = policy_manifests(namespace, *values)
    cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    deadline = time.monotonic() + timeout
    while (waiting := _not_yet_enforced(cp, namespace)) is not None:
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"approvals policies not enforced within {timeout:.0f} s: {waiting}")
        time.sleep(0.2)
    return docs


def _not_yet_enforced(cp: ControlPlane, namespace: str) -> str | None:
    """None once both policies act on a create in `namespace`, else which one does not yet."""

    def dry_run_create(spec: dict[str, object]) -> subprocess.CompletedProcess[str]:
        probe = {
            "apiVersion": "claimops.io/v1alpha1",
            "kind": "PipelineRun",
            "metadata": {"name": f"probe-{uuid.uuid4().hex[:6]}", "namespace": namespace},
            "spec": {"commit": {"sha": "0000000"}, **spec},
        }
        return cp.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe), check=False
        )

    recorded = dry_run_create({})
    if recorded.returncode != 0 or "submitter" not in json.loads(recorded.stdout)["spec"]:
        return f"the MutatingAdmissionPolicy recorded no submitter: {recorded.stderr.strip()}"
    # Refused whatever the chart's values: a run is created undecided.
    decided = dry_run_create({"approval": {"decision": "Approved"}})
    if "must be Pending when a run is created" not in decided.stderr:
        return f"the ValidatingAdmissionPolicy let a decided run be created: {decided.stdout}{decided.stderr}"
    return None


def uninstall(cp: ControlPlane, docs: Sequence[chart.Doc]) -> None:
    for doc in docs:
        cp.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--wait=false", check=False)


def as_user(user: str, *groups: str) -> list[str]:
    """kubectl flags acting as `user` in `groups` (impersonated by the harness's admin; RBAC
    is granted through system:masters, admission sees only `user` and the groups)."""
    return [f"--as={user}", "--as-group=system:masters", *(f"--as-group={g}" for g in groups)]


def as_approver(user: str) -> list[str]:
    return as_user(user, APPROVERS_GROUP)
