"""Run summaries and statuses, button states, deployments, failure toggles, health, claims, the
DAG, stage code and stage config (the pure parts of the UI)."""

from __future__ import annotations

from typing import Any

import pytest

from claimops_stages.claims import DEFAULT_WINDOW, generate_claims
from claimops_stages.contract import STAGES, FailureMode, stage_names
from claimops_ui import views
from claimops_ui.errors import NotFound


def run(phase: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "run-abc", "creationTimestamp": "2026-01-01T00:00:00Z", "resourceVersion": "7"},
        "spec": {"commit": {"sha": "abcdef1234", "message": "feat: x\n\nbody", "author": "ada"}, **spec},
        "status": {
            "phase": phase,
            "currentStage": "quick-train",
            "stages": [
                {"name": "commit", "state": "Succeeded"},
                {"name": "ci-tests", "state": "Succeeded"},
                {"name": "quick-train", "state": "Running", "reason": "Running"},
            ],
            "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running", "message": "m"}],
            "approval": {"decision": "Approved", "by": "alice"},
            "evaluation": {"candidateAuc": 0.81},
        },
    }


def test_run_summary() -> None:
    summary = views.run_summary(run("Running", failureInjection=["SchemaValidation"]))
    assert summary["shortSha"] == "abcdef1"
    assert summary["message"] == "feat: x"
    assert summary["approvedBy"] == "alice"
    assert summary["progress"] == "2/3"
    assert summary["auc"] == 0.81
    assert summary["failureInjection"] == ["SchemaValidation"]
    assert not summary["terminal"]


def queued(name: str, created: str) -> dict[str, Any]:
    r = run("Queued")
    r["metadata"].update(name=name, creationTimestamp=created)
    r["status"]["queue"] = {"stage": "ci-tests", "since": created, "limit": 4}
    return r


def test_queued_runs_are_placed_in_creation_order_then_by_name() -> None:
    runs = [
        queued("late", "2026-01-01T00:00:09Z"),
        run("Running"),
        queued("b-same-second", "2026-01-01T00:00:05Z"),
        queued("a-same-second", "2026-01-01T00:00:05Z"),
    ]
    assert views.queue_positions(runs) == {"a-same-second": 1, "b-same-second": 2, "late": 3}
    summary = views.run_summary(runs[0], 3)
    assert summary["queue"] == {
        "stage": "ci-tests",
        "since": "2026-01-01T00:00:09Z",
        "limit": 4,
        "position": 3,
    }
    assert views.run_summary(run("Running"), None)["queue"] is None


def awaiting(tally: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A run at the manual gate whose status.approval (the operator's tally) is `tally`."""
    r = run("AwaitingApproval", **spec)
    r["status"]["approval"] = tally
    return r


PENDING = {"decision": "Pending", "approvals": 0, "required": 1, "approvedBy": []}

ACTIONS = [
    ("running", run("Running"), {"continueToCD": False, "approve": False, "cancel": True}),
    ("awaiting-cd", run("AwaitingCD"), {"continueToCD": True, "approve": False, "cancel": True}),
    (
        "awaiting-cd-already-continued",
        run("AwaitingCD", continueToCD=True),
        {"continueToCD": False, "approve": False, "cancel": True},
    ),
    ("awaiting-approval", awaiting(PENDING), {"continueToCD": False, "approve": True, "cancel": True}),
    (
        # Admission reset the ballot to Pending; the tally says the gate is decided.
        "approved-phase-not-yet-advanced",
        awaiting({**PENDING, "decision": "Approved"}, approval={"decision": "Pending"}),
        {"continueToCD": False, "approve": False, "cancel": True},
    ),
    (
        "ballot-reset-by-admission-gate-still-open",
        awaiting({**PENDING, "required": 2, "approvals": 1}, approval={"decision": "Pending"}),
        {"continueToCD": False, "approve": True, "cancel": True},
    ),
    (
        "no-tally-yet-falls-back-to-the-spec",
        awaiting({}, approval={"decision": "Approved"}),
        {"continueToCD": False, "approve": False, "cancel": True},
    ),
    (
        "cancel-requested",
        run("Running", cancel=True),
        {"continueToCD": False, "approve": False, "cancel": False},
    ),
    ("succeeded", run("Succeeded"), {"continueToCD": False, "approve": False, "cancel": False}),
    ("failed", run("Failed"), {"continueToCD": False, "approve": False, "cancel": False}),
]


@pytest.mark.parametrize(("r", "expected"), [c[1:] for c in ACTIONS], ids=[c[0] for c in ACTIONS])
def test_actions_for(r: dict[str, Any], expected: dict[str, bool]) -> None:
    assert views.actions_for(r) == expected


# -- the approval gate: who may decide (mirrors the chart's approvals admission policy)

OPERATORS = ["claimops:operators", "system:authenticated"]
DEFAULT_POLICY = views.ApprovalPolicy()

MAY = [
    # (id, policy, submitter, user, groups, approved by, verdict, approve, reject, reason contains)
    ("approver-by-group", DEFAULT_POLICY, "ada", "bob", OPERATORS, [], "Pending", True, True, ""),
    (
        "approver-by-user",
        views.ApprovalPolicy(users=("carol",), groups=()),
        "ada", "carol", ["system:authenticated"], [], "Pending", True, True, "",
    ),
    (
        "not-an-approver",
        DEFAULT_POLICY,
        "ada", "eve", ["system:authenticated"], [], "Pending", False, False, "eve is not an approver",
    ),
    (
        "four-eyes-blocks-approve-not-reject",
        DEFAULT_POLICY, "ada", "ada", OPERATORS, [], "Pending", False, True, "four-eyes",
    ),
    (
        "four-eyes-off-the-submitter-may-approve",
        views.ApprovalPolicy(four_eyes=False), "ada", "ada", OPERATORS, [], "Pending", True, True, "",
    ),
    (
        "already-approved-by-this-user",
        views.ApprovalPolicy(quorum=2), "ada", "bob", OPERATORS, ["bob"], "Pending", False, True,
        "already approved",
    ),
    (
        "another-users-approval-does-not-count-against-me",
        views.ApprovalPolicy(quorum=2), "ada", "bob", OPERATORS, ["carol"], "Pending", True, True, "",
    ),
    ("gate-approved", DEFAULT_POLICY, "ada", "bob", OPERATORS, ["carol"], "Approved", False, False, "approved"),
    ("gate-rejected", DEFAULT_POLICY, "ada", "bob", OPERATORS, [], "Rejected", False, False, "rejected"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "submitter", "user", "groups", "approved_by", "verdict", "approve", "reject", "reason"),
    [c[1:] for c in MAY],
    ids=[c[0] for c in MAY],
)
def test_may_decide(
    policy: views.ApprovalPolicy,
    submitter: str,
    user: str,
    groups: list[str],
    approved_by: list[str],
    verdict: str,
    approve: bool,
    reject: bool,
    reason: str,
) -> None:
    may = views.may_decide(policy, submitter, user, groups, approved_by=approved_by, verdict=verdict)
    assert (may.approve, may.reject) == (approve, reject)
    assert reason in may.reason
    assert bool(may.reason) == (not approve)  # a reason whenever a button is withheld


def test_policy_parse_takes_the_charts_defaults_for_absent_fields() -> None:
    assert views.ApprovalPolicy.parse(None) == DEFAULT_POLICY
    policy = views.ApprovalPolicy.parse({"quorum": 2, "approvers": {"users": ["ada"]}})
    assert policy == views.ApprovalPolicy(quorum=2, four_eyes=True, users=("ada",))
    assert (
        views.ApprovalPolicy.parse({"fourEyes": False, "approvers": {"groups": []}}).approvers() == "nobody"
    )


TALLY = {
    "decision": "Pending",
    "approvals": 1,
    "required": 2,
    "approvedBy": ["bob"],
    "policy": {"quorum": 2, "fourEyes": True, "approvers": {"users": [], "groups": ["claimops:operators"]}},
    "decisions": [
        {"decision": "ContinueToCD", "user": "ada", "groups": OPERATORS, "at": "2026-01-01T00:01:00Z"},
        {
            "decision": "Approved",
            "user": "bob",
            "groups": OPERATORS,
            "comment": "ok",
            "at": "2026-01-01T00:02:00Z",
        },
    ],
}
SUBMITTER = {"username": "ada", "groups": OPERATORS}


def test_approval_view_shows_the_policy_the_tally_and_every_decision() -> None:
    gate = views.approval_view(awaiting(TALLY, submitter=SUBMITTER), "carol", OPERATORS)
    assert gate["summary"] == "1 of 2 — quorum 2, four-eyes on, approvers: groups claimops:operators"
    assert gate["submitter"] == SUBMITTER
    assert [(d["decision"], d["user"], d["comment"], d["at"]) for d in gate["decisions"]] == [
        ("ContinueToCD", "ada", "", "2026-01-01T00:01:00Z"),
        ("Approved", "bob", "ok", "2026-01-01T00:02:00Z"),
    ]
    assert gate["decisions"][1]["groups"] == OPERATORS
    assert gate["may"] == views.MayDecide(True, True)


@pytest.mark.parametrize(
    ("user", "approve", "reason"),
    [("ada", False, "four-eyes"), ("bob", False, "already approved"), (None, False, "Sign in")],
    ids=["submitter", "approved-already", "signed-out"],
)
def test_approval_view_withholds_approve_with_the_reason(
    user: str | None, approve: bool, reason: str
) -> None:
    gate = views.approval_view(awaiting(TALLY, submitter=SUBMITTER), user, OPERATORS)
    assert gate["may"].approve is approve
    assert reason in gate["may"].reason


def test_approval_view_falls_back_to_the_specs_decisions_and_policy_before_the_operator_tallies() -> None:
    spec_decisions = [{"decision": "Approved", "user": "bob", "groups": OPERATORS}]
    r = awaiting(
        {},
        submitter=SUBMITTER,
        approval={"decision": "Pending", "policy": {"quorum": 3}},
        decisions=spec_decisions,
    )
    gate = views.approval_view(r, "carol", OPERATORS)
    assert gate["summary"].startswith("0 of 3 — quorum 3, four-eyes on")
    assert [(d["user"], d["at"]) for d in gate["decisions"]] == [("bob", "")]


def test_dag_draws_all_twelve_stages_with_their_states() -> None:
    graph = views.dag(run("Running"))
    states = {n.name: n.state for n in graph["nodes"]}
    assert list(states) == list(stage_names())
    assert states["ci-tests"] == "Succeeded"
    assert states["quick-train"] == "Running"
    assert states["full-train"] == "Pending"
    assert states["rollback"] == "Available"
    # Ten edges along the pipeline and one dashed edge to rollback.
    assert len(graph["edges"]) == len(STAGES) - 1
    assert [e["to"] for e in graph["edges"] if e.get("dashed")] == ["rollback"]
    # No two nodes overlap and all fit in the view box.
    boxes = {(n.x, n.y) for n in graph["nodes"]}
    assert len(boxes) == len(STAGES)
    assert all(
        n.x + views.NODE_W <= graph["width"] and n.y + views.NODE_H <= graph["height"] for n in graph["nodes"]
    )


CODE = [
    ("ci-tests", "claimops_stages.stages", "ci_tests"),
    ("data-validation", "claimops_stages.stages", "data_validation"),
    ("quick-train", "claimops_stages.stages", "quick_train"),
    ("mlflow-log", "claimops_stages.stages", "mlflow_log"),
    ("full-train", "claimops_stages.stages", "full_train"),
    ("evaluate-vs-champion", "claimops_stages.stages", "evaluate_vs_champion"),
    ("shadow-monitor", "claimops_stages.stages", "shadow_monitor"),
    ("promote-production", "claimops_stages.stages", "promote_production"),
    ("rollback", "claimops_stages.stages", "rollback"),
    ("commit", "claimops_operator.pipeline", "_handle_marker"),
    ("manual-approval", "claimops_operator.pipeline", "_handle_gate"),
    ("deploy-staging", "claimops_operator.pipeline", "_handle_deployment"),
]


@pytest.mark.parametrize(("stage", "module", "function"), CODE, ids=[c[0] for c in CODE])
def test_stage_code_is_the_function_that_runs(stage: str, module: str, function: str) -> None:
    code = views.stage_code(stage)
    assert code["module"] == module
    assert code["function"] == function
    assert code["source"].startswith(f"def {function}(")


def test_every_stage_shows_code() -> None:
    assert sorted(c[0] for c in CODE) == sorted(stage_names())


def test_unknown_stage_is_not_found() -> None:
    with pytest.raises(NotFound):
        views.stage_code("deploy-everything")


def test_stage_config_of_a_job_hides_secret_values() -> None:
    job = {
        "metadata": {"name": "run-abc-quick-train-1"},
        "spec": {
            "activeDeadlineSeconds": 1800,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "image": "claimops/stages:0.1.0",
                            "command": ["python", "-m", "claimops_stages", "quick-train"],
                            "args": ["--rows", "5000"],
                            "env": [
                                {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"},
                                {
                                    "name": "AWS_SECRET_ACCESS_KEY",
                                    "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}},
                                },
                            ],
                        }
                    ]
                }
            },
        },
    }
    config = views.stage_config("quick-train", run("Running"), job)
    assert config["job"]["args"] == ["--rows", "5000"]
    assert config["job"]["env"][1] == {"name": "AWS_SECRET_ACCESS_KEY", "value": "<secretKeyRef s3:secret>"}
    assert config["runSpec"]["commit"]["sha"] == "abcdef1234"
    assert config["stageStatus"]["state"] == "Running"


def test_stage_config_without_a_run_shows_the_default_arguments() -> None:
    config = views.stage_config("full-train")
    assert config["job"]["command"] == ["python", "-m", "claimops_stages", "full-train"]
    assert "--rows" in config["job"]["args"]
    assert "run" not in config


def test_run_status_is_the_summary_with_the_status_and_the_buttons() -> None:
    body = views.run_status(awaiting(PENDING))
    assert body["name"] == "run-abc"
    assert [s["name"] for s in body["stages"]] == ["commit", "ci-tests", "quick-train"]
    assert body["conditions"][0]["reason"] == "Running"
    assert body["actions"] == {"continueToCD": False, "approve": True, "cancel": True}
    assert (body["shadow"], body["mlflow"]) == ({}, {})


PAGE_STAGES = [
    # (id, asked for, shown)
    ("asked-for", "full-train", "full-train"),
    ("unknown-falls-back-to-current", "nope", "quick-train"),
    ("none-falls-back-to-current", "", "quick-train"),
]


@pytest.mark.parametrize(("asked", "shown"), [c[1:] for c in PAGE_STAGES], ids=[c[0] for c in PAGE_STAGES])
def test_run_page_context_shows_the_stage_asked_for_or_the_current_one(asked: str, shown: str) -> None:
    ctx = views.run_page_context(run("Running"), asked)
    assert ctx["stage"] == shown
    assert ctx["run"]["name"] == "run-abc"
    assert len(ctx["dag"]["nodes"]) == len(STAGES)


def deployment(name: str, role: str, ready: str = "True") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": {"claimops.io/requested-by-run": "run-abc"}},
        "spec": {"role": role, "model": {"name": "claim-settlement", "alias": "champion"}},
        "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "Serving"}]},
    }


def test_deployment_list_is_in_pipeline_order() -> None:
    listed = [
        deployment("prod", "production"),
        deployment("z-staging", "staging", "False"),
        deployment("a-staging", "staging"),
        deployment("shadow", "shadow"),
    ]
    found = views.deployment_list(listed)
    assert [d["name"] for d in found] == ["a-staging", "z-staging", "shadow", "prod"]
    prod = found[-1]
    assert (prod["ready"], prod["readyReason"], prod["requestedVersion"]) == (True, "Serving", "champion")
    assert (prod["replicas"], prod["readyReplicas"], prod["pipelineRun"]) == (1, 0, "run-abc")
    assert found[1]["ready"] is False
    assert prod["rolledBack"] == {}


def test_rollback_result_names_the_deployment_and_its_request() -> None:
    patched = deployment("prod", "production")
    patched["spec"]["rollback"] = {"requestId": "ui-1", "reason": "r"}
    assert views.rollback_result(patched) == {
        "name": "prod",
        "rollback": {"requestId": "ui-1", "reason": "r"},
    }


def test_failure_list_has_every_mode_with_its_effect_and_reason() -> None:
    found = views.failure_list({"SchemaValidation": True})
    assert [f["mode"] for f in found] == [m.value for m in FailureMode]
    assert [f["mode"] for f in found if f["enabled"]] == ["SchemaValidation"]
    assert all(f["effect"] and f["reason"] for f in found)


HEALTH = [
    # (id, runs synced, watch errors, MLflow answers, status)
    ("ok", True, [], True, "ok"),
    ("runs-not-synced", False, [], True, "degraded"),
    ("watch-error", True, ["pipelineruns: boom"], True, "degraded"),
    ("mlflow-down", True, [], False, "degraded"),
]


@pytest.mark.parametrize(
    ("synced", "errors", "mlflow_ok", "status"), [c[1:] for c in HEALTH], ids=[c[0] for c in HEALTH]
)
def test_health_view(synced: bool, errors: list[str], mlflow_ok: bool, status: str) -> None:
    kube = {"runsSynced": synced, "deploymentsSynced": True, "errors": errors}
    body = views.health_view(
        kube, mlflow_ok, version="1", namespace="ns", mlflow_url="http://m", read_only=False
    )
    assert body["status"] == status
    assert body["kubernetes"] == kube
    assert body["mlflow"] == {"ok": mlflow_ok, "url": "http://m"}


def test_claims_sample_labels_each_claim_with_the_generated_outcome() -> None:
    frame = generate_claims(5, seed=3, window=DEFAULT_WINDOW)
    body = views.claims_sample(frame, 5, 3, "none")
    assert (body["rows"], body["seed"], body["profile"]) == (5, 3, "none")
    assert [c["settlement"] for c in body["claims"]] == list(frame["settlement"].astype(str))
    assert isinstance(body["claims"][0]["claim_id"], int)


def test_the_champion_card_links_to_its_release_record() -> None:
    run_id = "a" * 32
    champion = {
        "version": "3",
        "tags": {
            "claimops.release.uri": f"runs:/{run_id}/release/release-v3.intoto.json",
            "claimops.release.digest": "sha256:" + "b" * 64,
        },
    }
    view = views.mlflow_overview("claim-settlement", [], champion, None, [], None)
    assert view["champion"]["release"] == {
        "href": f"/mlflow/artifacts/{run_id}/release/release-v3.intoto.json",
        "digest": "sha256:" + "b" * 64,
    }
    assert view["challenger"] is None
    # A version promoted before release records existed (or with a foreign URI) has no link.
    for tags in ({}, {"claimops.release.uri": "s3://bucket/x.json"}):
        assert views.with_release_record({"version": "1", "tags": tags}) == {"version": "1", "tags": tags}


def test_a_queued_run_shows_its_place_in_line_in_the_list_and_on_its_page() -> None:
    from jinja2 import Environment, FileSystemLoader

    from claimops_ui.deps import TEMPLATES_DIR

    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True)
    runs = [queued("older", "2026-01-01T00:00:01Z"), queued("newer", "2026-01-01T00:00:02Z")]
    places = views.queue_positions(runs)
    row = env.get_template("_run_row.html").render(r=views.run_summary(runs[1], places["newer"]))
    assert "#2 in queue" in row
    assert "phase-queued" in row
    live = env.get_template("_run_live.html").render(
        **views.run_page_context(runs[1], "", None, (), places["newer"]), user=None, csrf=""
    )
    assert "#2</strong> in line for a stage slot (ci-tests starts next)" in live
    assert "at most 4 stage Jobs run at once" in live
