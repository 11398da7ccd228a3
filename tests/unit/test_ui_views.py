"""Run summaries, button states, the DAG, stage code and stage config (pure parts of the UI)."""

from __future__ import annotations

from typing import Any

import pytest

from claimops_stages.contract import STAGES, stage_names
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


ACTIONS = [
    ("running", "Running", {}, {"continueToCD": False, "approve": False, "cancel": True}),
    ("awaiting-cd", "AwaitingCD", {}, {"continueToCD": True, "approve": False, "cancel": True}),
    (
        "awaiting-cd-already-continued",
        "AwaitingCD",
        {"continueToCD": True},
        {"continueToCD": False, "approve": False, "cancel": True},
    ),
    ("awaiting-approval", "AwaitingApproval", {}, {"continueToCD": False, "approve": True, "cancel": True}),
    (
        "approved-not-yet-observed",
        "AwaitingApproval",
        {"approval": {"decision": "Approved"}},
        {"continueToCD": False, "approve": False, "cancel": True},
    ),
    (
        "cancel-requested",
        "Running",
        {"cancel": True},
        {"continueToCD": False, "approve": False, "cancel": False},
    ),
    ("succeeded", "Succeeded", {}, {"continueToCD": False, "approve": False, "cancel": False}),
    ("failed", "Failed", {}, {"continueToCD": False, "approve": False, "cancel": False}),
]


@pytest.mark.parametrize(("phase", "spec", "expected"), [c[1:] for c in ACTIONS], ids=[c[0] for c in ACTIONS])
def test_actions_for(phase: str, spec: dict[str, Any], expected: dict[str, bool]) -> None:
    assert views.actions_for(run(phase, **spec)) == expected


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
