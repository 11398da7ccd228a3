"""Adding a stage is one row in the stage table: the operator's decide(), the stage CLI's
argument parser and the UI's DAG follow it, with no other module touched.

The rows are added here only (monkeypatched into ``claimops_stages.contract.STAGES``).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from claimops_operator import pipeline
from claimops_operator.conditions import get_condition
from claimops_operator.naming import job_name
from claimops_operator.pipeline import CreateJob, Decision, JobState, ObservedDeployment, ObservedJob, decide
from claimops_stages import contract
from claimops_stages.contract import Phase, ResultStatus, Stage, StageKind, StageResult
from claimops_stages.runner import build_parser
from claimops_ui import views
from tests.unit.admitted import admitted

T0 = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
RUN = pipeline.RunRef(name="demo", namespace="claims", generation=1)
SPEC: dict[str, Any] = admitted(
    {"commit": {"sha": "1a2b3c4d"}, "continueToCD": True, "approval": {"decision": "Approved", "by": "alice"}}
)

#: A CD Job stage between evaluate-vs-champion and the manual approval.
BIAS_CHECK = Stage(
    "bias-check",
    Phase.CD,
    StageKind.JOB,
    "Bias Check",
    "Approval rates by provider region stay within a band.",
    arguments=("run", "model_name", "rows", "candidate_version"),
    metrics=("parity_gap",),
    non_retryable=frozenset({"BiasDetected"}),
)
#: A CI Job stage after mlflow-log: CIPassed must now wait for it.
SBOM_SCAN = Stage(
    "sbom-scan",
    Phase.CI,
    StageKind.JOB,
    "SBOM Scan",
    "Known vulnerabilities in the stage image's packages.",
    arguments=("run", "commit_sha"),
    condition="CIPassed",
)


def _with(row: Stage, after: str) -> tuple[Stage, ...]:
    names = [s.name for s in contract.STAGES]
    at = names.index(after) + 1
    return (*contract.STAGES[:at], row, *contract.STAGES[at:])


@pytest.fixture(params=[(BIAS_CHECK, "evaluate-vs-champion"), (SBOM_SCAN, "mlflow-log")], ids=["cd", "ci"])
def added(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Stage:
    row, after = request.param
    monkeypatch.setattr(contract, "STAGES", _with(row, after))
    return row


def _passed(stage: str) -> StageResult:
    version = "7" if stage == "full-train" else None
    return StageResult(stage, ResultStatus.SUCCEEDED, "Passed", model_version=version)


class Cluster:
    """Jobs pass (or report `failures`), ModelDeployments serve at once."""

    def __init__(self, failures: dict[str, StageResult] | None = None) -> None:
        self.status: dict[str, Any] = {}
        self.jobs: list[ObservedJob] = []
        self.deployments: dict[str, ObservedDeployment] = {}
        self.failures = failures or {}
        self.created: list[CreateJob] = []
        self.events: list[pipeline.EmitEvent] = []
        #: Stage states whenever CIPassed was True.
        self.while_ci_passed: list[dict[str, str]] = []

    def step(self) -> Decision:
        decision = decide(RUN, SPEC, self.status, self.jobs, self.deployments, T0)
        self.status = decision.status
        ci_passed = get_condition(self.status.get("conditions"), "CIPassed")
        if ci_passed and ci_passed["status"] == "True":
            self.while_ci_passed.append({e["name"]: e["state"] for e in self.status["stages"]})
        for action in decision.actions:
            if isinstance(action, CreateJob):
                self.created.append(action)
                result = self.failures.get(action.stage) or _passed(action.stage)
                state: JobState = "Succeeded" if result.passed else "Failed"
                name = job_name(RUN.name, action.stage, action.attempt)
                self.jobs.append(ObservedJob(action.stage, action.attempt, name, state, result, None, T0, T0))
            elif isinstance(action, pipeline.ApplyModelDeployment):
                url = f"http://{action.role}.claims:8080"
                self.deployments[action.role] = ObservedDeployment(action.role, True, action.version, url=url)
            elif isinstance(action, pipeline.EmitEvent):
                self.events.append(action)
        return decision

    def finish(self) -> None:
        for _ in range(60):
            self.step()
            if self.status.get("phase") in ("Succeeded", "Failed", "Rejected"):
                return
        raise AssertionError(f"the run did not finish: {self.status}")


def test_decide_runs_the_added_stage_in_table_order(added: Stage) -> None:
    cluster = Cluster()
    cluster.finish()
    names = [e["name"] for e in cluster.status["stages"]]
    assert names == [s.name for s in contract.STAGES if s.in_run]
    assert added.name in names
    assert [c.stage for c in cluster.created] == [
        s.name for s in contract.STAGES if s.in_run and s.kind is StageKind.JOB
    ]
    job = next(c for c in cluster.created if c.stage == added.name)
    assert job.job_name == f"demo-{added.name}-1"
    assert job.deadline_seconds == contract.SPEC_DEFAULTS["timeouts.stageSeconds"]
    entry = next(e for e in cluster.status["stages"] if e["name"] == added.name)
    assert entry["state"] == "Succeeded"
    assert cluster.status["phase"] == "Succeeded"
    # "The last CI stage" comes from the table: CIPassed is True only once it succeeded.
    last_ci = [s.name for s in contract.STAGES if s.in_run and s.phase is Phase.CI][-1]
    assert cluster.while_ci_passed
    assert {states[last_ci] for states in cluster.while_ci_passed} == {"Succeeded"}


@pytest.mark.parametrize(
    ("reason", "attempts"), [("BiasDetected", 1), ("MLflowUnavailable", 2)], ids=["non-retryable", "retried"]
)
def test_the_added_stages_failures_follow_its_row(reason: str, attempts: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(contract, "STAGES", _with(BIAS_CHECK, "evaluate-vs-champion"))
        failure = StageResult("bias-check", ResultStatus.FAILED, reason, "parity gap 0.4")
        cluster = Cluster({"bias-check": failure})
        for _ in range(60):
            decision = cluster.step()
            if cluster.status["phase"] == "Failed":
                break
            if decision.requeue_after and not decision.actions:
                # The retry's backoff: let the clock pass it.
                cluster.status = decide(
                    RUN, SPEC, cluster.status, cluster.jobs, cluster.deployments, T0.replace(hour=5)
                ).status
        attempts_made = [c.attempt for c in cluster.created if c.stage == "bias-check"]
        assert len(attempts_made) == attempts
        assert cluster.status["phase"] == "Failed"
        succeeded = get_condition(cluster.status["conditions"], "Succeeded")
        assert succeeded is not None
        assert succeeded["reason"] == reason
        skipped = [e["name"] for e in cluster.status["stages"] if e["state"] == "Skipped"]
        assert skipped[0] == "manual-approval"


def test_the_cli_parses_the_added_stage(added: Stage) -> None:
    ns = build_parser().parse_args([added.name, "--rows", "1000", "--candidate-version", "7"])
    assert ns.stage == added.name
    assert ns.rows == 1000
    assert ns.candidate_version == "7"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["not-a-stage"])


def test_the_ui_dag_draws_the_added_stage(added: Stage) -> None:
    graph = views.dag(None)
    names = [n.name for n in graph["nodes"]]
    assert names == [s.name for s in contract.STAGES]
    node = next(n for n in graph["nodes"] if n.name == added.name)
    assert (node.phase, node.kind, node.state) == (added.phase.value, "Job", "Pending")
    run_order = [s.name for s in contract.STAGES if s.in_run]
    at = run_order.index(added.name)
    edges = {(e["from"], e["to"]) for e in graph["edges"] if not e.get("dashed")}
    assert (run_order[at - 1], added.name) in edges
    assert (added.name, run_order[at + 1]) in edges
    assert len({(n.x, n.y) for n in graph["nodes"]}) == len(names)
    assert all(n.x + views.NODE_W <= graph["width"] for n in graph["nodes"])


def test_a_row_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BIAS_CHECK.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("kind", [k for k in StageKind if k is not StageKind.JOB])
def test_the_table_names_the_operator_handler_of_each_kind(kind: StageKind) -> None:
    # The UI shows the function a row names as "the step's code": it must be the one that runs.
    row = Stage("x", Phase.CI, kind, "X", "x")
    assert row.module == pipeline.__name__
    assert pipeline._HANDLERS[kind].__name__ == row.function
