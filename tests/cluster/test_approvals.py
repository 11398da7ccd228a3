"""Attributed approvals on the real control plane, with real users.

Each person is a client certificate signed by the cluster CA (CN = user, O = groups), so the
API server authenticates them exactly as it would a kubeadm-made user: no impersonation. The
namespace carries the chart's approvals admission policies (tests/conftest.py), rendered from
helm/claimops with its default values: approvers = group claimops:operators, quorum 1,
four-eyes on.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_operator import condition, phase_is, run_manifest, wait_for
from tests.conftest import OperatorFactory
from tests.harness import approvals
from tests.harness.control_plane import ControlPlane
from tests.harness.node_standin import NodeStandIn

pytestmark = pytest.mark.cluster

OPERATORS = "claimops:operators"
DEVELOPERS = "claimops:developers"
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class Person:
    name: str
    groups: tuple[str, ...]
    kubeconfig: Path


@dataclass
class Team:
    cp: ControlPlane
    namespace: str
    people: dict[str, Person]

    def kubectl(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl(
            *args, "-n", self.namespace, kubeconfig=self.people[who].kubeconfig, check=False
        )

    def submit(self, who: str, name: str, **spec: Any) -> dict[str, Any]:
        manifest = run_manifest(name, **spec)
        result = self.cp.kubectl(
            "create", "-n", self.namespace, "-o", "json", "-f", "-",
            input=json.dumps(manifest), kubeconfig=self.people[who].kubeconfig, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        run: dict[str, Any] = json.loads(result.stdout)
        return run

    def patch(
        self, who: str, name: str, spec: dict[str, Any], *flags: str
    ) -> subprocess.CompletedProcess[str]:
        return self.kubectl(
            who, "patch", "cpr", name, "--type=merge", "-p", json.dumps({"spec": spec}), *flags
        )

    def decide(
        self, who: str, name: str, decision: str, dry_run: str = "none", **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return self.patch(who, name, {"approval": {"decision": decision, **extra}}, f"--dry-run={dry_run}")

    def get(self, name: str) -> dict[str, Any]:
        run: dict[str, Any] = json.loads(
            self.cp.kubectl("get", "cpr", name, "-n", self.namespace, "-o", "json").stdout
        )
        return run


@pytest.fixture
def team(control_plane: ControlPlane, namespace: str) -> Team:
    """sam and eve develop; ada and bob operate (the chart's approvers group). RBAC lets all
    four create and patch runs: who may decide is the admission policy's business."""
    cp = control_plane
    cp.kubectl(
        "create", "role", "runs", "-n", namespace, "--resource=pipelineruns.claimops.io",
        "--verb=get,list,watch,create,patch,update",
    )  # fmt: skip
    cp.kubectl(
        "create", "rolebinding", "runs", "-n", namespace, "--role=runs",
        f"--group={OPERATORS}", f"--group={DEVELOPERS}",
    )  # fmt: skip
    roster = {"sam": (DEVELOPERS,), "eve": (DEVELOPERS,), "ada": (OPERATORS,), "bob": (OPERATORS,)}
    people = {
        name: Person(name, groups, cp.user_kubeconfig(f"{name}@{namespace}", groups))
        for name, groups in roster.items()
    }
    return Team(cp, namespace, people)


def user(team: Team, who: str) -> str:
    return f"{who}@{team.namespace}"


def refused(result: subprocess.CompletedProcess[str], *says: str) -> None:
    assert result.returncode != 0, f"accepted: {result.stdout}"
    for text in says:
        assert text in result.stderr, result.stderr


def recorded(team: Team, name: str) -> list[tuple[str, str, list[str]]]:
    return [
        (d["decision"], d["user"], d.get("groups", [])) for d in team.get(name)["spec"].get("decisions", [])
    ]


def test_the_submitter_is_who_the_api_server_authenticated_and_never_changes(team: Team) -> None:
    run = team.submit("sam", "forged-submitter", submitter={"username": "mallory"})
    assert run["spec"]["submitter"] == {"username": user(team, "sam"), "groups": [DEVELOPERS, AUTHENTICATED]}
    assert run["spec"]["approval"]["policy"] == {
        "quorum": 1,
        "fourEyes": True,
        "approvers": {"users": [], "groups": [OPERATORS]},
    }
    refused(team.patch("ada", "forged-submitter", {"submitter": {"username": "ada"}}), "never changes")
    refused(team.patch("ada", "forged-submitter", {"submitter": None}), "spec.submitter")
    assert team.get("forged-submitter")["spec"]["submitter"]["username"] == user(team, "sam")


def test_a_decision_is_recorded_under_the_authenticated_user_only(team: Team) -> None:
    team.submit("sam", "named")
    refused(
        team.decide("ada", "named", "Approved", by="bob"),
        f'spec.approval.by is "bob" but the API server authenticated you as "{user(team, "ada")}"',
    )
    assert recorded(team, "named") == []
    done = team.decide("ada", "named", "Approved", comment="AUC +0.01, drift fine")
    assert done.returncode == 0, done.stderr
    spec = team.get("named")["spec"]
    assert spec["decisions"] == [
        {
            "decision": "Approved",
            "user": user(team, "ada"),
            "groups": [OPERATORS, AUTHENTICATED],
            "comment": "AUC +0.01, drift fine",
        }
    ]
    # The ballot is reset, so nothing is left to be re-read as a new decision.
    assert spec["approval"]["decision"] == "Pending"
    assert "by" not in spec["approval"]
    assert "comment" not in spec["approval"]


def test_four_eyes_and_approvers(team: Team) -> None:
    team.submit("ada", "own-run")
    refused(
        team.decide("ada", "own-run", "Approved"),
        f'"{user(team, "ada")}" submitted this run and may not approve it: four-eyes',
    )
    refused(
        team.decide("eve", "own-run", "Approved"),
        f'"{user(team, "eve")}" may not approve or reject this run',
        f"groups [{OPERATORS}] (spec.approval.policy.approvers)",
    )
    refused(
        team.decide("eve", "own-run", "Rejected", comment="I do not like it"), "may not approve or reject"
    )
    assert recorded(team, "own-run") == []
    # Anyone may steer the run; that is recorded too (ContinueToCD, Cancel).
    assert team.patch("eve", "own-run", {"continueToCD": True}).returncode == 0
    assert recorded(team, "own-run") == [("ContinueToCD", user(team, "eve"), [DEVELOPERS, AUTHENTICATED])]


def test_quorum_counts_distinct_users_and_a_decided_gate_takes_no_more(team: Team) -> None:
    team.submit("sam", "two-keys", approval={"policy": {"quorum": 2}})
    assert team.decide("ada", "two-keys", "Approved").returncode == 0
    refused(
        team.decide("ada", "two-keys", "Approved"), "has already approved this run", "2 distinct approvers"
    )
    assert team.decide("bob", "two-keys", "Approved").returncode == 0
    refused(team.decide("bob", "two-keys", "Rejected", comment="late"), "already decided (2 of 2 approvals)")
    assert [(d, u) for d, u, _ in recorded(team, "two-keys")] == [
        ("Approved", user(team, "ada")),
        ("Approved", user(team, "bob")),
    ]


def test_a_rejection_needs_a_comment_and_ends_the_voting(team: Team) -> None:
    team.submit("sam", "no", approval={"policy": {"quorum": 2}})
    assert team.decide("ada", "no", "Approved").returncode == 0
    refused(team.decide("bob", "no", "Rejected"), "spec.approval.comment is required")
    assert team.decide("bob", "no", "Rejected", comment="PSI on age 0.3").returncode == 0
    refused(team.decide("ada", "no", "Approved"), "already decided (rejected)")


def test_forgeries_are_refused(team: Team) -> None:
    team.submit("sam", "target")
    bob_entry = {"decision": "Approved", "user": user(team, "bob"), "groups": [OPERATORS, AUTHENTICATED]}
    # Writing spec.decisions directly in someone else's name.
    refused(
        team.patch("ada", "target", {"decisions": [bob_entry]}),
        "a decision is recorded only under the user who makes it",
    )
    # ...or in one's own name with groups one does not have.
    eve_as_operator = {
        "decision": "Approved",
        "user": user(team, "eve"),
        "groups": [OPERATORS, AUTHENTICATED],
    }
    refused(team.patch("eve", "target", {"decisions": [eve_as_operator]}), "recorded only under the user")
    # Replaying ada's recorded approval as a second one, or rewriting history.
    assert team.decide("ada", "target", "Rejected", comment="not yet").returncode == 0
    history = team.get("target")["spec"]["decisions"]
    refused(team.patch("bob", "target", {"decisions": [*history, {**history[0], "user": user(team, "bob")}]}))
    refused(
        team.patch("ada", "target", {"decisions": [{**history[0], "decision": "Approved"}]}), "append-only"
    )
    refused(team.patch("ada", "target", {"decisions": []}), "append-only")
    own = {"decision": "ContinueToCD", "user": user(team, "ada"), "groups": [OPERATORS, AUTHENTICATED]}
    refused(team.patch("ada", "target", {"decisions": [*history, *[own] * 4]}), "at most three decisions")
    # A run cannot be created already decided or with a history.
    refused(
        team.cp.kubectl(
            "create", "-n", team.namespace, "-f", "-", kubeconfig=team.people["ada"].kubeconfig, check=False,
            input=json.dumps(run_manifest("pre-approved", approval={"decision": "Approved"})),
        ),
        "must be Pending when a run is created",
    )  # fmt: skip
    refused(
        team.cp.kubectl(
            "create", "-n", team.namespace, "-f", "-", kubeconfig=team.people["ada"].kubeconfig, check=False,
            input=json.dumps(run_manifest("with-history", decisions=[bob_entry])),
        ),
        "spec.decisions must be empty when a run is created",
    )  # fmt: skip
    assert recorded(team, "target") == [("Rejected", user(team, "ada"), [OPERATORS, AUTHENTICATED])]


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ({"fourEyes": False}, "spec.approval.policy.fourEyes cannot be turned off"),
        (
            {"approvers": {"groups": [DEVELOPERS]}},
            "spec.approval.policy.approvers.groups may only name groups",
        ),
        ({"approvers": {"users": ["sam"]}}, "spec.approval.policy.approvers.users may only name users"),
        ({"quorum": 0}, "spec.approval.policy.quorum"),
    ],
    ids=["four-eyes-off", "other-group", "other-user", "quorum-0"],
)
def test_a_run_may_not_ask_for_less_than_the_chart(team: Team, policy: dict[str, Any], says: str) -> None:
    manifest = run_manifest(f"lax-{uuid.uuid4().hex[:4]}", approval={"policy": policy})
    result = team.cp.kubectl(
        "create", "-n", team.namespace, "-f", "-", input=json.dumps(manifest),
        kubeconfig=team.people["sam"].kubeconfig, check=False,
    )  # fmt: skip
    refused(result, says)


def test_without_the_recording_policy_a_decision_is_refused_not_unattributed(team: Team) -> None:
    """The policies run inside the API server: no webhook can be down. If the recording
    (mutating) policy is missing anyway, the validating one fails the request closed."""
    team.submit("sam", "closed")
    binding = next(
        d
        for d in approvals.policy_manifests(team.namespace)
        if d["kind"] == "MutatingAdmissionPolicyBinding" and d["metadata"]["name"].endswith("-approvals")
    )
    team.cp.kubectl("delete", binding["kind"], binding["metadata"]["name"])
    try:
        # Probe with server-side dry runs until the deletion is in effect, then decide for real.
        _eventually(
            lambda: team.decide("ada", "closed", "Approved", dry_run="server"), lambda r: r.returncode != 0
        )
        result = team.decide("ada", "closed", "Approved")
        refused(
            result,
            "your decision was not recorded because the approvals MutatingAdmissionPolicy is not active",
        )
        assert recorded(team, "closed") == []
        assert team.get("closed")["spec"]["approval"]["decision"] == "Pending"
    finally:
        team.cp.kubectl("apply", "-f", "-", input=json.dumps(binding))
    _eventually(
        lambda: team.decide("ada", "closed", "Approved", dry_run="server"), lambda r: r.returncode == 0
    )
    assert team.decide("ada", "closed", "Approved").returncode == 0
    assert recorded(team, "closed") == [("Approved", user(team, "ada"), [OPERATORS, AUTHENTICATED])]


def _eventually(
    attempt: Callable[[], subprocess.CompletedProcess[str]],
    done: Callable[[subprocess.CompletedProcess[str]], bool],
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Policy changes take effect a moment after they are written."""
    deadline = time.monotonic() + timeout
    while not done(result := attempt()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return result


def test_quorum_of_two_with_the_operator_killed_between_the_approvals(
    team: Team, node_standin: NodeStandIn, start_operator: OperatorFactory
) -> None:
    cp, ns = team.cp, team.namespace
    operator = start_operator(ns)
    team.submit("sam", "quorum", autoContinueToCD=True, approval={"policy": {"quorum": 2}})
    wait_for(cp, ns, "quorum", "AwaitingApproval", phase_is("AwaitingApproval"), operator_log=operator.log)

    assert team.decide("ada", "quorum", "Approved", comment="looks good").returncode == 0
    run = wait_for(
        cp, ns, "quorum", "1 of 2",
        lambda r: (r["status"].get("approval") or {}).get("approvals") == 1, operator_log=operator.log,
    )  # fmt: skip
    assert run["status"]["phase"] == "AwaitingApproval"
    assert condition(run, "Approved")["status"] == "Unknown"
    assert f"1 of 2 approvals ({user(team, 'ada')})" in condition(run, "Approved")["message"]

    # The operator dies; the second approval is made while it is down, and a repeat is refused.
    operator.kill()
    assert team.decide("bob", "quorum", "Approved").returncode == 0
    refused(team.decide("ada", "quorum", "Approved"), "already decided")
    operator.start()

    run = wait_for(
        cp, ns, "quorum", "Approved", lambda r: condition(r, "Approved").get("status") == "True",
        operator_log=operator.log,
    )  # fmt: skip
    approval = run["status"]["approval"]
    assert (approval["decision"], approval["approvals"], approval["required"]) == ("Approved", 2, 2)
    assert approval["approvedBy"] == [user(team, "ada"), user(team, "bob")]
    assert [(d["user"], d["decision"], d.get("comment")) for d in approval["decisions"]] == [
        (user(team, "ada"), "Approved", "looks good"),
        (user(team, "bob"), "Approved", None),
    ]
    assert all(d["groups"] == [OPERATORS, AUTHENTICATED] and d["at"] for d in approval["decisions"])
    assert condition(run, "Approved")["message"] == (
        f"Approved: 2 of 2 approvals ({user(team, 'ada')}, {user(team, 'bob')})"
    )
