"""Attributed approvals on the kind cluster, through kubectl with kind's own credentials
(kubernetes-admin) and, for other people, kubectl impersonation by that admin: the chart as
`make up` installed it enforces who decides. Runs are created cancelled, so the operator
starts no Job for them: these checks are about admission, not the pipeline."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import KindCluster, pipelinerun

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

OPERATORS = "claimops:operators"


def as_(user: str, *groups: str) -> list[str]:
    return [f"--as={user}", *(f"--as-group={g}" for g in groups)]


def submit(kind: KindCluster, *who: str, **spec: Any) -> str:
    name = f"approvals-{uuid.uuid4().hex[:6]}"
    manifest = pipelinerun(name, "a" * 40, cancel=True, **spec)
    kind.kubectl("create", "-f", "-", *who, stdin=manifest)
    return name


def decide(kind: KindCluster, name: str, *who: str, **approval: str) -> subprocess.CompletedProcess[str]:
    patch = json.dumps({"spec": {"approval": approval}})
    return kind.kubectl("patch", "cpr", name, "--type=merge", "-p", patch, *who, check=False)


def refused(result: subprocess.CompletedProcess[str], says: str) -> None:
    assert result.returncode != 0, result.stdout
    assert says in result.stderr, result.stderr


def test_kind_admin_is_the_recorded_submitter_and_no_approver(kind: KindCluster) -> None:
    name = submit(kind)
    submitter = kind.get("cpr", name)["spec"]["submitter"]
    assert submitter["username"] == "kubernetes-admin", submitter
    refused(decide(kind, name, decision="Approved"), '"kubernetes-admin" may not approve or reject this run')
    refused(
        decide(kind, name, *as_("ada", OPERATORS), decision="Approved", by="kubernetes-admin"),
        'spec.approval.by is "kubernetes-admin" but the API server authenticated you as "ada"',
    )
    assert decide(kind, name, *as_("ada", OPERATORS), decision="Approved").returncode == 0
    # Created cancelled: that is part of the submission, not a later decision.
    assert [(d["user"], d["decision"]) for d in kind.get("cpr", name)["spec"]["decisions"]] == [
        ("ada", "Approved")
    ]


def test_four_eyes_quorum_and_forgeries_on_kind(kind: KindCluster) -> None:
    name = submit(kind, *as_("sam", OPERATORS), approval={"decision": "Pending", "policy": {"quorum": 2}})
    refused(decide(kind, name, *as_("sam", OPERATORS), decision="Approved"), "may not approve it: four-eyes")
    assert decide(kind, name, *as_("ada", OPERATORS), decision="Approved").returncode == 0
    refused(decide(kind, name, *as_("ada", OPERATORS), decision="Approved"), "has already approved this run")
    forged = {"decision": "Approved", "user": "bob", "groups": [OPERATORS, "system:authenticated"]}
    history = kind.get("cpr", name)["spec"]["decisions"]
    refused(
        kind.kubectl(
            "patch", "cpr", name, "--type=merge", "-p", json.dumps({"spec": {"decisions": [*history, forged]}}),
            check=False,
        ),
        "a decision is recorded only under the user who makes it",
    )  # fmt: skip
    status = json.dumps({"status": {"approval": {"decision": "Approved", "by": "bob"}}})
    refused(
        kind.kubectl("patch", "cpr", name, "--subresource=status", "--type=merge", "-p", status, check=False),
        "status is written by the ClaimOps operator only",
    )
    assert decide(kind, name, *as_("bob", OPERATORS), decision="Approved").returncode == 0
    refused(
        decide(kind, name, *as_("carol", OPERATORS), decision="Rejected", comment="late"), "already decided"
    )
    users = [(d["user"], d["decision"]) for d in kind.get("cpr", name)["spec"]["decisions"]]
    assert users == [("ada", "Approved"), ("bob", "Approved")]
