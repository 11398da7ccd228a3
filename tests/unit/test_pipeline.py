"""Table-driven tests of the pure stage-transition logic (claimops_operator.pipeline.decide).

Every case starts from a status that decide() itself produced: :func:`drive` runs a fresh
PipelineRun forward with passing Jobs until it reaches the stage named in ``Case.at``. Then the
case's observations (``history``, then ``jobs``/``staging`` at ``after`` seconds) are fed to
decide() and the last Decision is compared with the expected phase, stage states, actions,
Events (in order), conditions and requeue delay.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from claimops_operator.admission import Ticket
from claimops_operator.conditions import get_condition
from claimops_operator.naming import MAX_NAME_LENGTH, job_name
from claimops_operator.pipeline import (
    EVALUATION_METRICS,
    Action,
    ApplyModelDeployment,
    CreateJob,
    Decision,
    DeleteJob,
    EmitEvent,
    JobState,
    ObservedDeployment,
    ObservedJob,
    RunRef,
    decide,
    retry_backoff,
    stage_inputs,
)
from claimops_operator.pods import ContainerWaiting
from claimops_stages.contract import ResultStatus, StageInputs, StageResult, run_stages, stage
from tests.unit.admitted import admitted

T0 = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
RUN = RunRef(name="demo", namespace="claims", generation=1)

BASE_SPEC: dict[str, Any] = yaml.safe_load(
    """
    commit:
      sha: 1a2b3c4d
      message: Tune the forest
      author: Ada <ada@example.com>
    model: {name: claim-settlement}
    dataset: {rows: 20000, seed: 42, window: 2026-01-01/2026-03-31, drift: none}
    continueToCD: false
    approval: {decision: Pending}
    retries: 1
    """
)

PRODUCTION = ObservedDeployment(
    "production", True, "6", "Ready", "serving 6", url="http://claim-settlement-production.claims:8080"
)

#: What each stage reports when it passes.
PASSING: Mapping[str, dict[str, Any]] = {
    "ci-tests": {"metrics": {"tests_passed": 42.0}},
    "data-validation": {"metrics": {"rows": 20000.0}},
    "quick-train": {"metrics": {"auc": 0.81}},
    "mlflow-log": {"mlflow_run_id": "ci-run-1", "outputs": {"experiment_id": "3"}},
    "full-train": {"metrics": {"auc": 0.83}, "mlflow_run_id": "train-run-1", "model_version": "7"},
    "evaluate-vs-champion": {
        "metrics": {
            "candidate_auc": 0.83,
            "champion_auc": 0.80,
            "auc_delta": 0.03,
            "auc_delta_ci_low": 0.01,
            "auc_delta_ci_high": 0.05,
        },
        "outputs": {"champion_version": "6"},
        "mlflow_run_id": "eval-run-1",
    },
    "shadow-monitor": {
        "metrics": {"agreement": 0.96, "max_psi": 0.04},
        "outputs": {"drifted_features": ""},
    },
    "promote-production": {"outputs": {"alias": "champion"}},
}


def passed(stage: str) -> StageResult:
    return StageResult(stage, ResultStatus.SUCCEEDED, "Passed", **copy.deepcopy(PASSING.get(stage, {})))


def failed(stage: str, reason: str, message: str = "it broke", **extra: Any) -> StageResult:
    return StageResult(stage, ResultStatus.FAILED, reason, message, **extra)


def job(
    stage: str,
    attempt: int = 1,
    state: JobState = "Succeeded",
    result: StageResult | None = None,
    *,
    failure_reason: str | None = None,
    finished: float = 0.0,
) -> ObservedJob:
    """An observed Job; a Succeeded Job reports a passing result unless told otherwise."""
    if result is None and state == "Succeeded" and failure_reason is None:
        result = passed(stage)
    return ObservedJob(
        stage=stage,
        attempt=attempt,
        name=job_name(RUN.name, stage, attempt),
        state=state,
        result=result,
        failure_reason=failure_reason,
        started_at=T0,
        finished_at=None if state == "Active" else T0 + timedelta(seconds=finished),
    )


def unavailable(stage: str = "mlflow-log", attempt: int = 1, finished: float = 0.0) -> ObservedJob:
    """A Job that failed because MLflow could not be reached: a retryable failure."""
    return job(stage, attempt, "Failed", failed(stage, "MLflowUnavailable"), finished=finished)


def seen(stage: str, attempt: int = 1) -> ObservedJob:
    """An active Job as the API lists it (with its uid)."""
    return replace(job(stage, attempt, "Active"), uid=f"uid-{stage}-{attempt}")


def stopping(stage: str, attempt: int = 1) -> ObservedJob:
    """The pod of a Job that was deleted, not ended yet (the gateway reports it as Active)."""
    return replace(seen(stage, attempt), started_at=None, job_deleted=True)


def nojob(
    stage: str, attempt: int = 1, state: JobState = "Failed", failure_reason: str = "BackoffLimitExceeded"
) -> ObservedJob:
    """A finished Job whose result could not be read."""
    return ObservedJob(
        stage, attempt, job_name(RUN.name, stage, attempt), state, None, failure_reason, T0, T0
    )


MISSING_IMAGE = "registry.invalid/claimops/stages:missing"
#: What kubelets write for each waiting reason (messages as seen on kind / containerd).
KUBELET_MESSAGES: Mapping[str, str] = {
    "ErrImagePull": f'failed to pull and unpack image "{MISSING_IMAGE}": not found',
    "ImagePullBackOff": f'Back-off pulling image "{MISSING_IMAGE}"',
    "ErrImageNeverPull": f'Container image "{MISSING_IMAGE}" is not present with pull policy of Never',
    "InvalidImageName": f'Failed to apply default image tag "{MISSING_IMAGE}": invalid reference format',
    "CreateContainerConfigError": 'secret "mlflow-s3" not found',
    "CreateContainerError": "context deadline exceeded",
    "RunContainerError": 'exec: "python": executable file not found in $PATH',
    "ContainerCreating": "",
    "PodInitializing": "",
}


def stuck(stage: str, reason: str, attempt: int = 1) -> ObservedJob:
    """An active Job whose pod's container waits with the kubelet's `reason`."""
    name = job_name(RUN.name, stage, attempt)
    waiting = ContainerWaiting(f"{name}-x7k2p", "stage", MISSING_IMAGE, reason, KUBELET_MESSAGES[reason])
    return ObservedJob(stage, attempt, name, "Active", started_at=T0, waiting=waiting)


def served(
    role: str, ready: bool, version: str | None, reason: str = "Ready", message: str = ""
) -> ObservedDeployment:
    url = f"http://claim-settlement-{role}.claims:8080"
    return ObservedDeployment(role, ready, version, reason, message, url=url)


def staging(ready: bool, version: str | None, reason: str = "Ready", message: str = "") -> ObservedDeployment:
    return served("staging", ready, version, reason, message)


def merged(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in patch.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, Mapping) else copy.deepcopy(value)
    return out


def spec_of(patch_yaml: str) -> dict[str, Any]:
    """BASE_SPEC with a patch, as the API server stores it after admission."""
    return admitted(merged(BASE_SPEC, yaml.safe_load(patch_yaml) or {}))


# --------------------------------------------------------------------------------------------
# Driving a run forward


@dataclass
class World:
    status: dict[str, Any]
    jobs: list[ObservedJob]
    deployments: dict[str, ObservedDeployment]


LINEAR_STAGES = [s.name for s in run_stages()]
_AFTER_CD_GATE = LINEAR_STAGES.index("full-train")
_AFTER_APPROVAL = LINEAR_STAGES.index("deploy-staging")


def drive(at: str, spec: Mapping[str, Any], serving: bool = True) -> World:
    """Run a fresh PipelineRun with passing Jobs until it is in progress at ``at`` (at T0).

    ``at`` is a stage name, ``"cd-gate"`` (AwaitingCD), ``"end"`` (Succeeded) or ``""`` (new).
    Gates in front of ``at`` are opened in the spec used for driving.
    """
    world = World({}, [], {"production": PRODUCTION})
    if not at:
        return world
    drive_spec = copy.deepcopy(dict(spec))
    index = {"end": len(LINEAR_STAGES), "cd-gate": _AFTER_CD_GATE}.get(at) or LINEAR_STAGES.index(at)
    drive_spec["continueToCD"] = at != "cd-gate" and index >= _AFTER_CD_GATE
    drive_spec["autoContinueToCD"] = False
    verdict = "Approved" if index >= _AFTER_APPROVAL else "Pending"
    votes = [d for d in drive_spec.get("decisions", ()) if d["decision"] in ("Approved", "Rejected")]
    if verdict == "Pending":  # the case's own votes count only once the run is at `at`
        drive_spec["decisions"] = [d for d in drive_spec.get("decisions", ()) if d not in votes]
    elif not any(d["decision"] == "Approved" for d in votes):
        drive_spec = admitted(
            {**drive_spec, "approval": {**drive_spec.get("approval", {}), "decision": verdict}}
        )
    drive_spec["cancel"] = False
    for _ in range(40):
        decision = decide(RUN, drive_spec, world.status, world.jobs, world.deployments, T0, serving)
        world.status = decision.status
        current = world.status["stages"][LINEAR_STAGES.index(world.status["currentStage"])]
        if (at == "cd-gate" and world.status["phase"] == "AwaitingCD") or (
            at == "end" and decision.requeue_after is None and world.status["phase"] == "Succeeded"
        ):
            return world
        # Stop in a gate's wait, or once a Job stage runs (not while it waits for a model server).
        waiting_at_gate = current["state"] == "Waiting" and stage(current["name"]).serve_before is None
        if current["name"] == at and (current["state"] == "Running" or waiting_at_gate):
            return world
        for action in decision.actions:
            if isinstance(action, CreateJob):
                world.jobs.append(job(action.stage, action.attempt))
            elif isinstance(action, ApplyModelDeployment):
                # A ModelDeployment controller that rolls out at once.
                world.deployments[action.role] = served(action.role, True, action.version)
    raise AssertionError(f"the run never reached {at!r}: {world.status}")


# --------------------------------------------------------------------------------------------
# The table


@dataclass
class Obs:
    """One reconcile: Jobs that appeared since the last one, and when it happens."""

    jobs: list[ObservedJob] = field(default_factory=list)
    after: float = 0.0
    deployed: dict[str, ObservedDeployment] = field(default_factory=dict)


@dataclass
class Case:
    id: str
    at: str
    spec: str = ""
    history: list[Obs] = field(default_factory=list)
    jobs: list[ObservedJob] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # Jobs deleted (TTL, by hand) before the last call
    staging: ObservedDeployment | None = None
    #: Other roles' ModelDeployments as observed at the last call (shadow, production).
    deployed: dict[str, ObservedDeployment] = field(default_factory=dict)
    after: float = 0.0
    serving: bool = True
    # Expectations.
    phase: str = "Running"
    stage: str | None = None
    states: dict[str, str] = field(default_factory=dict)
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: list[tuple[str, ...]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)
    requeue: float | None = None


def compact(actions: Sequence[Action]) -> tuple[list[tuple[str, ...]], list[str]]:
    """(non-Event actions as short tuples, Events as "Type/Reason")."""
    others: list[tuple[str, ...]] = []
    events: list[str] = []
    for action in actions:
        if isinstance(action, EmitEvent):
            events.append(f"{action.type}/{action.reason}")
        elif isinstance(action, CreateJob):
            others.append(("CreateJob", action.job_name))
        elif isinstance(action, DeleteJob):
            others.append(("DeleteJob", action.job_name))
        elif isinstance(action, ApplyModelDeployment):
            others.append(("Apply", action.role, action.version))
    return others, events


def play(case: Case) -> tuple[World, Decision]:
    spec = spec_of(case.spec)
    world = drive(case.at, spec, case.serving)
    for obs in case.history:
        world.jobs.extend(obs.jobs)
        world.deployments.update(obs.deployed)
        now = T0 + timedelta(seconds=obs.after)
        world.status = decide(
            RUN, spec, world.status, world.jobs, world.deployments, now, case.serving
        ).status
    world.jobs = [j for j in world.jobs if j.name not in case.gone] + case.jobs
    if case.staging is not None:
        world.deployments["staging"] = case.staging
    world.deployments.update(case.deployed)
    now = T0 + timedelta(seconds=case.after)
    return world, decide(RUN, spec, world.status, world.jobs, world.deployments, now, case.serving)


N, W = "Normal", "Warning"
#: The Events of a stage failure that ends the run, and of a gate that rejects it.
RUN_FAILED = [f"{W}/StageFailed", f"{W}/RunFailed"]
RUN_REJECTED = [f"{W}/GateRejected", f"{W}/RunRejected"]
CI_FAILURE_CONDITIONS = {"Approved": ("False", "NotReached"), "Deployed": ("False", "NotReached")}

CASES: list[Case] = [
    # --- starting and finishing every stage ---------------------------------------------
    Case(
        "new-run-records-commit-and-starts-ci-tests",
        at="",
        stage="ci-tests",
        states={"commit": "Succeeded", "ci-tests": "Running", "data-validation": "Pending"},
        fields={
            "commit": {
                "outputs": {
                    "sha": "1a2b3c4d",
                    "author": "Ada <ada@example.com>",
                    "message": "Tune the forest",
                }
            }
        },
        actions=[("CreateJob", "demo-ci-tests-1")],
        events=[f"{N}/RunStarted", f"{N}/StageSucceeded", f"{N}/StageStarted"],
        conditions={
            "Succeeded": ("Unknown", "Running"),
            "CIPassed": ("Unknown", "Running"),
            "Approved": ("Unknown", "Pending"),
            "Deployed": ("Unknown", "Pending"),
        },
    ),
    Case(
        "active-job-keeps-stage-running",
        at="quick-train",
        jobs=[job("quick-train", state="Active")],
        after=60,
        stage="quick-train",
        states={"quick-train": "Running"},
        conditions={"Succeeded": ("Unknown", "Running")},
    ),
    *[
        Case(
            f"{stage}-succeeds-and-{nxt}-starts-at-once",
            at=stage,
            spec="continueToCD: true",
            jobs=[job(stage)],
            stage=nxt,
            states={stage: "Succeeded", nxt: "Running"},
            fields={stage: {"reason": "Passed", "metrics": PASSING[stage].get("metrics", {})}},
            actions=[("CreateJob", f"demo-{nxt}-1")],
            events=[f"{N}/StageSucceeded", f"{N}/StageStarted"],
            conditions={"Succeeded": ("Unknown", "Running")},
        )
        for stage, nxt in [
            ("ci-tests", "data-validation"),
            ("data-validation", "quick-train"),
            ("quick-train", "mlflow-log"),
            ("full-train", "evaluate-vs-champion"),
            ("shadow-monitor", "promote-production"),
        ]
    ],
    Case(
        "promote-production-job-done-then-production-is-pointed-at-the-candidate",
        at="promote-production",
        jobs=[job("promote-production")],
        stage="promote-production",
        states={"promote-production": "Running"},
        fields={
            "promote-production": {"message": "Waiting for production to serve version 7 (Ready: serving 6)"}
        },
        actions=[("Apply", "production", "7")],
        conditions={"Succeeded": ("Unknown", "Running")},
        requeue=10,
    ),
    Case(
        "promote-production-succeeds-once-production-serves-the-candidate",
        at="promote-production",
        jobs=[job("promote-production")],
        deployed={"production": served("production", True, "7")},
        phase="Succeeded",
        stage="promote-production",
        states=dict.fromkeys(LINEAR_STAGES, "Succeeded"),
        events=[f"{N}/StageSucceeded", f"{N}/RunSucceeded"],
        conditions={
            "Succeeded": ("True", "Succeeded"),
            "CIPassed": ("True", "Passed"),
            "Approved": ("True", "Approved"),
            "Deployed": ("True", "StagingReady"),
        },
    ),
    # --- the CI-to-CD gate --------------------------------------------------------------
    Case(
        "mlflow-log-succeeds-and-run-waits-at-cd-gate",
        at="mlflow-log",
        jobs=[job("mlflow-log")],
        phase="AwaitingCD",
        stage="full-train",
        states={"mlflow-log": "Succeeded", "full-train": "Waiting"},
        events=[f"{N}/StageSucceeded", f"{N}/GateWaiting"],
        conditions={"Succeeded": ("Unknown", "AwaitingCD"), "CIPassed": ("True", "Passed")},
        requeue=86400,
    ),
    Case(
        "cd-gate-keeps-waiting-without-events",
        at="cd-gate",
        after=3600,
        phase="AwaitingCD",
        stage="full-train",
        states={"full-train": "Waiting"},
        conditions={"Succeeded": ("Unknown", "AwaitingCD")},
        requeue=82800,
    ),
    Case(
        "cd-gate-manual-continue-starts-full-train",
        at="cd-gate",
        spec="continueToCD: true",
        after=120,
        stage="full-train",
        states={"full-train": "Running"},
        actions=[("CreateJob", "demo-full-train-1")],
        events=[f"{N}/GatePassed", f"{N}/StageStarted"],
        conditions={"Succeeded": ("Unknown", "Running")},
    ),
    Case(
        "cd-gate-auto-continue-never-waits",
        at="mlflow-log",
        spec="autoContinueToCD: true",
        jobs=[job("mlflow-log")],
        stage="full-train",
        states={"full-train": "Running"},
        actions=[("CreateJob", "demo-full-train-1")],
        events=[f"{N}/StageSucceeded", f"{N}/GatePassed", f"{N}/StageStarted"],
        conditions={"Succeeded": ("Unknown", "Running"), "CIPassed": ("True", "Passed")},
    ),
    Case(
        "cd-gate-times-out-after-approval-seconds",
        at="cd-gate",
        spec="timeouts: {approvalSeconds: 600}",
        after=600,
        phase="Rejected",
        stage="full-train",
        states={"full-train": "Skipped", "evaluate-vs-champion": "Skipped", "promote-production": "Skipped"},
        events=RUN_REJECTED,
        conditions={
            "Succeeded": ("False", "ApprovalTimeout"),
            "CIPassed": ("True", "Passed"),
            "Approved": ("False", "NotReached"),
        },
    ),
    # --- the manual approval gate --------------------------------------------------------
    Case(
        "evaluation-passes-and-run-awaits-approval",
        at="evaluate-vs-champion",
        jobs=[job("evaluate-vs-champion")],
        phase="AwaitingApproval",
        stage="manual-approval",
        states={"evaluate-vs-champion": "Succeeded", "manual-approval": "Waiting"},
        events=[f"{N}/StageSucceeded", f"{N}/GateWaiting"],
        conditions={
            "Succeeded": ("Unknown", "AwaitingApproval"),
            "Approved": ("Unknown", "AwaitingApproval"),
        },
        requeue=86400,
    ),
    Case(
        "approval-given-in-advance-passes-the-gate-without-waiting",
        at="evaluate-vs-champion",
        spec="approval: {decision: Approved, by: ada}",
        jobs=[job("evaluate-vs-champion")],
        stage="deploy-staging",
        states={"manual-approval": "Succeeded", "deploy-staging": "Running"},
        actions=[("Apply", "staging", "7")],
        events=[f"{N}/StageSucceeded", f"{N}/GatePassed", f"{N}/StageStarted"],
        conditions={"Approved": ("True", "Approved"), "Succeeded": ("Unknown", "Running")},
        requeue=10,
    ),
    Case(
        "approval-pending-requeues-at-the-timeout",
        at="manual-approval",
        after=600,
        phase="AwaitingApproval",
        stage="manual-approval",
        conditions={"Approved": ("Unknown", "AwaitingApproval")},
        requeue=85800,
    ),
    Case(
        "approval-approved-deploys-candidate-to-staging",
        at="manual-approval",
        spec="approval: {decision: Approved, by: ada, comment: ship it}",
        after=60,
        stage="deploy-staging",
        states={"manual-approval": "Succeeded", "deploy-staging": "Running"},
        actions=[("Apply", "staging", "7")],
        events=[f"{N}/GatePassed", f"{N}/StageStarted"],
        conditions={"Approved": ("True", "Approved"), "Deployed": ("Unknown", "Deploying")},
        requeue=10,
    ),
    Case(
        "approval-rejected-ends-run-and-deploys-nothing",
        at="manual-approval",
        spec="approval: {decision: Rejected, by: bob, comment: AUC gain too small}",
        after=60,
        phase="Rejected",
        stage="manual-approval",
        states={
            "manual-approval": "Failed",
            "deploy-staging": "Skipped",
            "shadow-monitor": "Skipped",
            "promote-production": "Skipped",
        },
        events=RUN_REJECTED,
        conditions={
            "Succeeded": ("False", "Rejected"),
            "Approved": ("False", "Rejected"),
            "Deployed": ("False", "NotReached"),
        },
    ),
    Case(
        "approval-times-out",
        at="manual-approval",
        after=86400,
        phase="Rejected",
        stage="manual-approval",
        states={"manual-approval": "Failed", "deploy-staging": "Skipped"},
        fields={"manual-approval": {"reason": "ApprovalTimeout"}},
        events=RUN_REJECTED,
        conditions={"Succeeded": ("False", "ApprovalTimeout"), "Approved": ("False", "ApprovalTimeout")},
    ),
    # --- deploy-staging -----------------------------------------------------------------
    Case(
        "deploy-staging-waits-for-ready-without-reapplying",
        at="deploy-staging",
        staging=staging(False, "7", "Progressing", "0/1 replicas ready"),
        after=30,
        stage="deploy-staging",
        states={"deploy-staging": "Running"},
        conditions={"Deployed": ("Unknown", "Deploying")},
        requeue=10,
    ),
    Case(
        "deploy-staging-reapplies-while-an-older-version-serves",
        at="deploy-staging",
        staging=staging(True, "6"),
        after=30,
        stage="deploy-staging",
        actions=[("Apply", "staging", "7")],
        requeue=10,
    ),
    Case(
        "deploy-staging-ready-puts-the-candidate-in-shadow",
        at="deploy-staging",
        staging=staging(True, "7"),
        after=30,
        stage="shadow-monitor",
        states={"deploy-staging": "Succeeded", "shadow-monitor": "Waiting"},
        actions=[("Apply", "shadow", "7")],
        events=[f"{N}/StageSucceeded", f"{N}/StageStarted"],
        conditions={"Deployed": ("True", "StagingReady"), "Succeeded": ("Unknown", "Running")},
        requeue=10,
    ),
    Case(
        "shadow-ready-starts-the-shadow-monitor-job",
        at="deploy-staging",
        staging=staging(True, "7"),
        deployed={"shadow": served("shadow", True, "7")},
        after=30,
        stage="shadow-monitor",
        states={"deploy-staging": "Succeeded", "shadow-monitor": "Running"},
        actions=[("CreateJob", "demo-shadow-monitor-1")],
        events=[f"{N}/StageSucceeded", f"{N}/StageStarted", f"{N}/StageStarted"],
        conditions={"Deployed": ("True", "StagingReady"), "Succeeded": ("Unknown", "Running")},
    ),
    Case(
        # Production restarting (a node restart): scoring against it would blame its errors
        # on the candidate, so shadow-monitor waits for its baseline.
        "shadow-ready-waits-for-a-production-that-is-not-ready",
        at="deploy-staging",
        staging=staging(True, "7"),
        deployed={
            "shadow": served("shadow", True, "7"),
            "production": served("production", False, "6", "Progressing", "0/1 replicas ready"),
        },
        after=30,
        stage="shadow-monitor",
        states={"deploy-staging": "Succeeded", "shadow-monitor": "Waiting"},
        fields={
            "shadow-monitor": {
                "message": "Waiting for production (the shadow's baseline) to be Ready "
                "(Progressing: 0/1 replicas ready)"
            }
        },
        events=[f"{N}/StageSucceeded", f"{N}/StageStarted"],
        conditions={"Deployed": ("True", "StagingReady"), "Succeeded": ("Unknown", "Running")},
        requeue=10,
    ),
    Case(
        "a-production-scaled-to-zero-is-not-waited-for",
        at="deploy-staging",
        staging=staging(True, "7"),
        deployed={
            "shadow": served("shadow", True, "7"),
            "production": served("production", False, "6", "ScaledToZero", "spec.replicas is 0"),
        },
        after=30,
        stage="shadow-monitor",
        states={"deploy-staging": "Succeeded", "shadow-monitor": "Running"},
        actions=[("CreateJob", "demo-shadow-monitor-1")],
        events=[f"{N}/StageSucceeded", f"{N}/StageStarted", f"{N}/StageStarted"],
    ),
    Case(
        "a-production-that-stays-down-times-the-shadow-monitor-out",
        at="deploy-staging",
        history=[
            Obs(
                deployed={
                    "staging": staging(True, "7"),
                    "shadow": served("shadow", True, "7"),
                    "production": served("production", False, "6", "Progressing", "CrashLoopBackOff"),
                }
            )
        ],
        spec="timeouts: {stageSeconds: 300}",
        after=301,
        phase="Failed",
        stage="shadow-monitor",
        states={"shadow-monitor": "Failed", "promote-production": "Skipped"},
        fields={"shadow-monitor": {"reason": "StageTimeout"}},
        events=RUN_FAILED,
        conditions={"Succeeded": ("False", "StageTimeout")},
    ),
    Case(
        "shadow-that-never-gets-ready-times-out",
        at="deploy-staging",
        # Staging gets ready at T0: shadow-monitor starts waiting for the shadow.
        history=[Obs(deployed={"staging": staging(True, "7")})],
        spec="timeouts: {stageSeconds: 300}",
        deployed={"shadow": served("shadow", False, "7", "Progressing", "CrashLoopBackOff")},
        after=301,
        phase="Failed",
        stage="shadow-monitor",
        states={"shadow-monitor": "Failed", "promote-production": "Skipped"},
        fields={"shadow-monitor": {"reason": "StageTimeout"}},
        events=RUN_FAILED,
        conditions={"Succeeded": ("False", "StageTimeout")},
    ),
    Case(
        "deploy-staging-times-out",
        at="deploy-staging",
        spec="timeouts: {stageSeconds: 300}",
        staging=staging(False, "7", "Progressing", "ImagePullBackOff"),
        after=300,
        phase="Failed",
        stage="deploy-staging",
        states={"deploy-staging": "Failed", "shadow-monitor": "Skipped"},
        events=RUN_FAILED,
        conditions={"Succeeded": ("False", "StageTimeout"), "Deployed": ("False", "StageTimeout")},
    ),
    Case(
        "serving-disabled-ends-deployed-to-staging",
        at="deploy-staging",
        staging=staging(True, "7"),
        serving=False,
        phase="Succeeded",
        stage="deploy-staging",
        states={"deploy-staging": "Succeeded", "shadow-monitor": "Skipped", "promote-production": "Skipped"},
        events=[f"{N}/StageSucceeded", f"{N}/RunSucceeded"],
        conditions={"Succeeded": ("True", "DeployedToStaging"), "Deployed": ("True", "StagingReady")},
    ),
    # --- a stage's Job deleted (kubectl delete job) ----------------------------------------
    Case(
        "a-job-seen-running-then-deleted-fails-its-attempt-and-starts-the-next",
        at="data-validation",
        history=[Obs([seen("data-validation")], after=5)],
        gone=["demo-data-validation-1"],
        after=30,
        stage="data-validation",
        states={"data-validation": "Running"},
        fields={"data-validation": {"attempt": 2, "job": "demo-data-validation-2", "jobUID": None}},
        actions=[("CreateJob", "demo-data-validation-2")],
        events=[f"{W}/StageRetry", f"{N}/StageStarted"],
    ),
    Case(
        "a-deleted-jobs-pod-still-stopping-holds-the-next-attempt",
        at="data-validation",
        history=[Obs([seen("data-validation")], after=5)],
        gone=["demo-data-validation-1"],
        jobs=[stopping("data-validation")],
        after=10,
        stage="data-validation",
        states={"data-validation": "Running"},
        fields={"data-validation": {"attempt": 1, "jobUID": "uid-data-validation-1"}},
        conditions={"Succeeded": ("Unknown", "Running")},
        requeue=2,
    ),
    Case(
        "a-job-deleted-before-it-was-seen-is-known-by-its-stopping-pod",
        at="data-validation",
        history=[Obs([stopping("data-validation")], after=5)],
        gone=["demo-data-validation-1"],
        after=10,
        stage="data-validation",
        fields={"data-validation": {"attempt": 2, "job": "demo-data-validation-2"}},
        actions=[("CreateJob", "demo-data-validation-2")],
        events=[f"{W}/StageRetry", f"{N}/StageStarted"],
    ),
    Case(
        "a-deleted-job-with-no-retry-left-fails-the-run-saying-so",
        at="data-validation",
        spec="retries: 0",
        history=[Obs([seen("data-validation")], after=5)],
        gone=["demo-data-validation-1"],
        after=30,
        phase="Failed",
        stage="data-validation",
        states={"data-validation": "Failed"},
        fields={
            "data-validation": {
                "reason": "JobDeleted",
                "message": "Job demo-data-validation-1 was deleted before it finished",
            }
        },
        events=RUN_FAILED,
        conditions={"Succeeded": ("False", "JobDeleted")},
    ),
    Case(
        "a-job-never-seen-is-created-again-under-its-own-name",
        at="data-validation",
        after=5,
        stage="data-validation",
        fields={"data-validation": {"attempt": 1, "job": "demo-data-validation-1"}},
        actions=[("CreateJob", "demo-data-validation-1")],
    ),
    # --- retries ------------------------------------------------------------------------
    Case(
        "retryable-failure-waits-for-backoff",
        at="mlflow-log",
        jobs=[unavailable()],
        after=4,
        stage="mlflow-log",
        states={"mlflow-log": "Running"},
        fields={"mlflow-log": {"attempt": 1, "reason": "RetryBackoff"}},
        events=[f"{W}/StageRetry"],
        conditions={"Succeeded": ("Unknown", "Running")},
        requeue=6,
    ),
    Case(
        "retry-after-backoff-creates-attempt-2",
        at="mlflow-log",
        jobs=[unavailable()],
        after=10,
        stage="mlflow-log",
        fields={"mlflow-log": {"attempt": 2, "job": "demo-mlflow-log-2"}},
        actions=[("CreateJob", "demo-mlflow-log-2")],
        events=[f"{W}/StageRetry", f"{N}/StageStarted"],
    ),
    Case(
        "retry-event-is-emitted-once-during-backoff",
        at="mlflow-log",
        history=[Obs([unavailable()], after=2)],
        after=5,
        stage="mlflow-log",
        requeue=5,
    ),
    Case(
        "failed-job-deleted-during-backoff-is-retried-at-once",
        at="mlflow-log",
        history=[Obs([unavailable()], after=2)],
        gone=["demo-mlflow-log-1"],
        after=5,
        stage="mlflow-log",
        fields={"mlflow-log": {"attempt": 2, "job": "demo-mlflow-log-2"}},
        actions=[("CreateJob", "demo-mlflow-log-2")],
        events=[f"{N}/StageStarted"],
    ),
    Case(
        "second-attempt-backs-off-twice-as-long",
        at="quick-train",
        spec="retries: 2",
        history=[Obs([unavailable("quick-train")], after=10)],
        jobs=[unavailable("quick-train", 2, finished=30)],
        after=45,
        stage="quick-train",
        fields={"quick-train": {"attempt": 2, "reason": "RetryBackoff"}},
        events=[f"{W}/StageRetry"],
        requeue=5,
    ),
    Case(
        "retries-exhausted-fails-the-run",
        at="mlflow-log",
        history=[Obs([unavailable()], after=10)],
        jobs=[unavailable(attempt=2, finished=40)],
        after=40,
        phase="Failed",
        stage="mlflow-log",
        states={"mlflow-log": "Failed", "full-train": "Skipped"},
        fields={"mlflow-log": {"attempt": 2, "reason": "MLflowUnavailable"}},
        events=RUN_FAILED,
        conditions={
            "Succeeded": ("False", "MLflowUnavailable"),
            "CIPassed": ("False", "MLflowUnavailable"),
            **CI_FAILURE_CONDITIONS,
        },
    ),
    Case(
        "MLflowConnection-injection-with-no-retries-fails-with-MLflowUnavailable",
        at="mlflow-log",
        spec="{retries: 0, failureInjection: [MLflowConnection]}",
        jobs=[unavailable()],
        phase="Failed",
        stage="mlflow-log",
        states={"mlflow-log": "Failed"},
        events=RUN_FAILED,
        conditions={"Succeeded": ("False", "MLflowUnavailable"), "CIPassed": ("False", "MLflowUnavailable")},
    ),
    # --- deterministic failures are not retried (retries: 3) ----------------------------
    *[
        Case(
            f"{reason}-at-{stage}-is-not-retried",
            at=stage,
            spec=f"{{retries: 3, failureInjection: [{injection}]}}" if injection else "retries: 3",
            jobs=[job(stage, 1, "Failed", failed(stage, reason))],
            phase="Failed",
            stage=stage,
            states={stage: "Failed"},
            fields={stage: {"reason": reason, "attempt": 1}},
            events=RUN_FAILED,
            conditions={"Succeeded": ("False", reason), **({"CIPassed": ("False", reason)} if ci else {})},
        )
        for stage, reason, injection, ci in [
            ("ci-tests", "CITestsFailed", "TrainingError", True),
            ("data-validation", "SchemaValidationFailed", "SchemaValidation", True),
            ("evaluate-vs-champion", "MetricRegression", "MetricRegression", False),
            ("evaluate-vs-champion", "BelowMinAUC", "", False),
            ("shadow-monitor", "ShadowDisagreement", "", False),
            ("shadow-monitor", "DriftDetected", "", False),
        ]
    ],
    # --- Job-level failures -------------------------------------------------------------
    Case(
        "deadline-exceeded-is-retried",
        at="full-train",
        jobs=[nojob("full-train", failure_reason="DeadlineExceeded")],
        after=10,
        stage="full-train",
        fields={"full-train": {"attempt": 2}},
        actions=[("CreateJob", "demo-full-train-2")],
        events=[f"{W}/StageRetry", f"{N}/StageStarted"],
    ),
    Case(
        "deadline-exceeded-without-retries-fails-with-StageTimeout",
        at="full-train",
        spec="retries: 0",
        jobs=[nojob("full-train", failure_reason="DeadlineExceeded")],
        phase="Failed",
        stage="full-train",
        states={"full-train": "Failed"},
        events=RUN_FAILED,
        conditions={"Succeeded": ("False", "StageTimeout"), "CIPassed": ("True", "Passed")},
    ),
    Case(
        "failed-job-without-result-fails-with-JobFailed",
        at="quick-train",
        spec="retries: 0",
        jobs=[nojob("quick-train")],
        phase="Failed",
        stage="quick-train",
        events=RUN_FAILED,
        conditions={"Succeeded": ("False", "JobFailed"), "CIPassed": ("False", "JobFailed")},
    ),
    Case(
        "succeeded-job-without-result-fails-with-JobFailed",
        at="quick-train",
        spec="retries: 0",
        jobs=[nojob("quick-train", state="Succeeded", failure_reason="")],
        phase="Failed",
        stage="quick-train",
        conditions={"Succeeded": ("False", "JobFailed")},
        events=RUN_FAILED,
    ),
    Case(
        "succeeded-job-with-failed-result-is-a-failure",
        at="ci-tests",
        jobs=[job("ci-tests", 1, "Succeeded", failed("ci-tests", "CITestsFailed"))],
        phase="Failed",
        stage="ci-tests",
        states={"ci-tests": "Failed", "data-validation": "Skipped"},
        events=RUN_FAILED,
        conditions={"Succeeded": ("False", "CITestsFailed"), **CI_FAILURE_CONDITIONS},
    ),
    # --- containers that cannot start: fail at once, never retried (retries: 3) --------
    *[
        Case(
            f"{kubelet}-at-{stage}-fails-with-{reason}-without-retry",
            at=stage,
            spec="retries: 3",
            jobs=[stuck(stage, kubelet)],
            after=20,
            phase="Failed",
            stage=stage,
            states={stage: "Failed", nxt: "Skipped"},
            fields={stage: {"reason": reason, "attempt": 1, "job": f"demo-{stage}-1"}},
            # The pod would keep trying until the Job's deadline: the Job goes.
            actions=[("DeleteJob", f"demo-{stage}-1")],
            events=RUN_FAILED,
            conditions={"Succeeded": ("False", reason), "CIPassed": ci},
        )
        for kubelet, reason, stage, nxt, ci in [
            (
                "ImagePullBackOff",
                "ImagePullFailed",
                "ci-tests",
                "data-validation",
                ("False", "ImagePullFailed"),
            ),
            ("ErrImagePull", "ImagePullFailed", "quick-train", "mlflow-log", ("False", "ImagePullFailed")),
            (
                "ErrImageNeverPull",
                "ImagePullFailed",
                "full-train",
                "evaluate-vs-champion",
                ("True", "Passed"),
            ),
            (
                "InvalidImageName",
                "ImagePullFailed",
                "shadow-monitor",
                "promote-production",
                ("True", "Passed"),
            ),
            (
                "CreateContainerConfigError",
                "ContainerCannotStart",
                "data-validation",
                "quick-train",
                ("False", "ContainerCannotStart"),
            ),
            (
                "CreateContainerError",
                "ContainerCannotStart",
                "mlflow-log",
                "full-train",
                ("False", "ContainerCannotStart"),
            ),
            (
                "RunContainerError",
                "ContainerCannotStart",
                "evaluate-vs-champion",
                "manual-approval",
                ("True", "Passed"),
            ),
        ]
    ],
    Case(
        "image-pull-failure-on-a-retry-attempt-fails-that-attempt",
        at="mlflow-log",
        history=[Obs([unavailable()], after=10)],
        jobs=[stuck("mlflow-log", "ImagePullBackOff", attempt=2)],
        after=30,
        phase="Failed",
        stage="mlflow-log",
        states={"mlflow-log": "Failed"},
        fields={"mlflow-log": {"reason": "ImagePullFailed", "attempt": 2}},
        actions=[("DeleteJob", "demo-mlflow-log-2")],
        events=RUN_FAILED,
        conditions={"Succeeded": ("False", "ImagePullFailed")},
    ),
    *[
        Case(
            f"{kubelet}-is-progress-and-keeps-the-stage-running",
            at="quick-train",
            jobs=[stuck("quick-train", kubelet)],
            after=30,
            stage="quick-train",
            states={"quick-train": "Running"},
            conditions={"Succeeded": ("Unknown", "Running")},
        )
        for kubelet in ("ContainerCreating", "PodInitializing")
    ],
    Case(
        "staging-model-server-that-cannot-pull-fails-deploy-staging-at-once",
        at="deploy-staging",
        staging=staging(
            False, None, "ImagePullFailed", f'Cannot pull image "{MISSING_IMAGE}" (ErrImagePull)'
        ),
        after=30,
        phase="Failed",
        stage="deploy-staging",
        states={"deploy-staging": "Failed", "shadow-monitor": "Skipped", "promote-production": "Skipped"},
        fields={"deploy-staging": {"reason": "ImagePullFailed"}},
        events=RUN_FAILED,
        conditions={"Succeeded": ("False", "ImagePullFailed"), "Deployed": ("False", "ImagePullFailed")},
    ),
    Case(
        "a-stale-ImagePullFailed-of-the-previous-spec-is-waited-out",
        at="deploy-staging",
        staging=ObservedDeployment("staging", False, "6", "ImagePullFailed", "old news", current=False),
        after=30,
        stage="deploy-staging",
        states={"deploy-staging": "Running"},
        conditions={"Deployed": ("Unknown", "Deploying")},
        requeue=10,
    ),
    # --- cancel -------------------------------------------------------------------------
    Case(
        "cancel-while-a-job-runs-deletes-it",
        at="quick-train",
        spec="cancel: true",
        jobs=[job("quick-train", state="Active")],
        phase="Cancelled",
        stage="quick-train",
        states={"ci-tests": "Succeeded", "quick-train": "Cancelled", "mlflow-log": "Skipped"},
        actions=[("DeleteJob", "demo-quick-train-1")],
        events=[f"{W}/RunCancelled"],
        conditions={
            "Succeeded": ("False", "Cancelled"),
            "CIPassed": ("False", "Cancelled"),
            "Approved": ("False", "Cancelled"),
        },
    ),
    Case(
        "cancel-deletes-a-job-the-informer-has-not-shown-yet",
        at="quick-train",
        spec="cancel: true",
        phase="Cancelled",
        states={"quick-train": "Cancelled"},
        actions=[("DeleteJob", "demo-quick-train-1")],
        events=[f"{W}/RunCancelled"],
    ),
    Case(
        "cancel-at-cd-gate",
        at="cd-gate",
        spec="cancel: true",
        phase="Cancelled",
        stage="full-train",
        states={"full-train": "Cancelled", "evaluate-vs-champion": "Skipped"},
        events=[f"{W}/RunCancelled"],
        conditions={"Succeeded": ("False", "Cancelled"), "CIPassed": ("True", "Passed")},
    ),
    Case(
        "cancel-while-awaiting-approval",
        at="manual-approval",
        spec="cancel: true",
        phase="Cancelled",
        stage="manual-approval",
        states={"manual-approval": "Cancelled", "deploy-staging": "Skipped"},
        events=[f"{W}/RunCancelled"],
        conditions={"Succeeded": ("False", "Cancelled"), "Approved": ("False", "Cancelled")},
    ),
    Case(
        "cancel-after-finish-does-nothing",
        at="end",
        spec="{cancel: true, continueToCD: true, approval: {decision: Approved}}",
        phase="Succeeded",
        stage="promote-production",
        states={"promote-production": "Succeeded"},
        conditions={"Succeeded": ("True", "Succeeded")},
    ),
    # --- restart safety -----------------------------------------------------------------
    Case(
        "lost-status-adopts-the-running-job",
        at="",
        jobs=[job("ci-tests", state="Active")],
        stage="ci-tests",
        states={"ci-tests": "Running"},
        fields={"ci-tests": {"attempt": 1, "job": "demo-ci-tests-1"}},
        events=[f"{N}/RunStarted", f"{N}/StageSucceeded", f"{N}/StageStarted"],
    ),
    Case(
        "lost-status-adopts-the-finished-job-and-moves-on",
        at="",
        jobs=[job("ci-tests")],
        stage="data-validation",
        states={"ci-tests": "Succeeded", "data-validation": "Running"},
        actions=[("CreateJob", "demo-data-validation-1")],
        events=[
            f"{N}/RunStarted",
            f"{N}/StageSucceeded",
            f"{N}/StageStarted",
            f"{N}/StageSucceeded",
            f"{N}/StageStarted",
        ],
    ),
    Case(
        "job-not-visible-yet-is-created-again-under-the-same-name",
        at="ci-tests",
        after=5,
        stage="ci-tests",
        fields={"ci-tests": {"attempt": 1, "job": "demo-ci-tests-1"}},
        actions=[("CreateJob", "demo-ci-tests-1")],
    ),
    Case(
        "attempt-2-job-is-adopted-when-status-says-attempt-1",
        at="mlflow-log",
        jobs=[
            unavailable(),
            job("mlflow-log", 2, "Active"),
        ],
        after=30,
        stage="mlflow-log",
        states={"mlflow-log": "Running"},
        fields={"mlflow-log": {"attempt": 2, "job": "demo-mlflow-log-2"}},
        events=[f"{N}/StageStarted"],
    ),
    Case(
        "stale-informer-showing-only-attempt-1-does-not-fail-attempt-2",
        at="mlflow-log",
        spec="retries: 1",
        history=[Obs([unavailable()], after=10)],
        after=20,
        stage="mlflow-log",
        states={"mlflow-log": "Running"},
        fields={"mlflow-log": {"attempt": 2}},
        actions=[("CreateJob", "demo-mlflow-log-2")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide(case: Case) -> None:
    _, decision = play(case)
    status = decision.status
    actions, events = compact(decision.actions)

    assert status["phase"] == case.phase
    if case.stage is not None:
        assert status["currentStage"] == case.stage
    by_name = {s["name"]: s for s in status["stages"]}
    assert {name: by_name[name]["state"] for name in case.states} == case.states
    for name, expected in case.fields.items():
        assert {k: by_name[name].get(k) for k in expected} == expected, name
    assert actions == case.actions
    assert events == case.events
    got = {
        t: (c["status"], c["reason"])
        for t in case.conditions
        if (c := get_condition(status["conditions"], t))
    }
    assert got == case.conditions
    assert decision.requeue_after == case.requeue
    assert status["observedGeneration"] == RUN.generation


@pytest.mark.parametrize(
    ("kubelet", "expected"),
    [
        pytest.param(
            "ImagePullBackOff",
            f'Cannot pull image "{MISSING_IMAGE}" for container stage of pod demo-ci-tests-1-x7k2p '
            f'(ImagePullBackOff: Back-off pulling image "{MISSING_IMAGE}")',
            id="ImagePullBackOff",
        ),
        pytest.param(
            "ErrImagePull",
            f'Cannot pull image "{MISSING_IMAGE}" for container stage of pod demo-ci-tests-1-x7k2p '
            f'(ErrImagePull: failed to pull and unpack image "{MISSING_IMAGE}": not found)',
            id="ErrImagePull",
        ),
        pytest.param(
            "CreateContainerConfigError",
            f'The container stage of pod demo-ci-tests-1-x7k2p (image "{MISSING_IMAGE}") cannot start '
            '(CreateContainerConfigError: secret "mlflow-s3" not found)',
            id="CreateContainerConfigError",
        ),
    ],
)
def test_start_failure_names_the_image_and_the_kubelets_reason(kubelet: str, expected: str) -> None:
    world = drive("ci-tests", BASE_SPEC)
    decision = decide(RUN, BASE_SPEC, world.status, [stuck("ci-tests", kubelet)], world.deployments, T0)
    entry = next(s for s in decision.status["stages"] if s["name"] == "ci-tests")
    assert entry["message"] == f"Job demo-ci-tests-1: {expected}"
    summary = get_condition(decision.status["conditions"], "Succeeded")
    assert summary is not None
    assert summary["message"] == f"Stage ci-tests failed: Job demo-ci-tests-1: {expected}"
    events = [a for a in decision.actions if isinstance(a, EmitEvent)]
    assert [e.reason for e in events] == ["StageFailed", "RunFailed"]
    assert all(expected in e.message for e in events)
    # Nothing starts again, now or later (a finished run is stable).
    later = decide(RUN, BASE_SPEC, decision.status, [], world.deployments, T0 + timedelta(hours=1))
    assert later.actions == []


# --------------------------------------------------------------------------------------------
# Properties that hold in every phase


PHASES: list[Case] = [
    Case("Running", at="quick-train", jobs=[job("quick-train", state="Active")]),
    Case("AwaitingCD", at="cd-gate", phase="AwaitingCD"),
    Case("AwaitingApproval", at="manual-approval", phase="AwaitingApproval"),
    Case(
        "RetryBackoff",
        at="mlflow-log",
        jobs=[unavailable()],
    ),
    Case("Succeeded", at="end", phase="Succeeded"),
    Case(
        "DeployedToStaging", at="deploy-staging", staging=staging(True, "7"), serving=False, phase="Succeeded"
    ),
    Case(
        "Failed",
        at="ci-tests",
        jobs=[job("ci-tests", 1, "Failed", failed("ci-tests", "CITestsFailed"))],
        phase="Failed",
    ),
    Case("ImagePullFailed", at="ci-tests", jobs=[stuck("ci-tests", "ImagePullBackOff")], phase="Failed"),
    Case(
        "Rejected", at="manual-approval", spec="approval: {decision: Rejected, comment: no}", phase="Rejected"
    ),
    Case("Cancelled", at="cd-gate", spec="cancel: true", phase="Cancelled"),
]


@pytest.mark.parametrize("case", PHASES, ids=[c.id for c in PHASES])
def test_decide_is_deterministic_and_terminal_runs_are_stable(case: Case) -> None:
    world, first = play(case)
    assert first.status["phase"] == case.phase
    again = decide(RUN, spec_of(case.spec), world.status, world.jobs, world.deployments, T0, case.serving)
    assert again == first
    if case.phase in ("Succeeded", "Failed", "Rejected", "Cancelled"):
        later = T0 + timedelta(days=3)
        stable = decide(
            RUN, spec_of(case.spec), first.status, world.jobs, world.deployments, later, case.serving
        )
        assert stable == Decision(first.status, [], None)


def test_decide_does_not_change_its_inputs() -> None:
    world = drive("mlflow-log", BASE_SPEC)
    before = copy.deepcopy(world.status)
    decide(RUN, BASE_SPEC, world.status, [*world.jobs, job("mlflow-log")], world.deployments, T0)
    assert world.status == before


def test_finished_run_restamps_a_new_generation_only() -> None:
    world = drive("end", spec_of("{continueToCD: true, approval: {decision: Approved}}"))
    newer = RunRef(RUN.name, RUN.namespace, 2)
    decision = decide(newer, spec_of("cancel: true"), world.status, world.jobs, world.deployments, T0)
    assert decision.actions == []
    assert decision.status["observedGeneration"] == 2
    assert {c["observedGeneration"] for c in decision.status["conditions"]} == {2}
    assert {
        **decision.status,
        "observedGeneration": 1,
        "conditions": world.status["conditions"],
    } == world.status


def test_last_transition_time_changes_only_with_status() -> None:
    spec = spec_of("")
    first = decide(RUN, spec, {}, [], {}, T0)
    later = T0 + timedelta(minutes=5)
    second = decide(RUN, spec, first.status, [job("ci-tests")], {}, later)
    summary1 = get_condition(first.status["conditions"], "Succeeded")
    summary2 = get_condition(second.status["conditions"], "Succeeded")
    assert summary1 is not None
    assert summary2 is not None
    assert summary2["message"] != summary1["message"]  # moved on to data-validation
    assert summary2["lastTransitionTime"] == summary1["lastTransitionTime"] == "2026-11-26T04:00:00Z"
    ci = get_condition(second.status["conditions"], "CIPassed")
    assert ci is not None
    assert ci["lastTransitionTime"] == "2026-11-26T04:00:00Z"
    failed_run = decide(
        RUN,
        spec,
        second.status,
        [job("data-validation", 1, "Failed", failed("data-validation", "SchemaValidationFailed"))],
        {},
        later + timedelta(minutes=1),
    )
    ci = get_condition(failed_run.status["conditions"], "CIPassed")
    assert ci is not None
    assert ci["lastTransitionTime"] == "2026-11-26T04:06:00Z"


# --------------------------------------------------------------------------------------------
# What results put into status


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        pytest.param(
            passed("evaluate-vs-champion"),
            {
                "candidateAuc": 0.83,
                "championAuc": 0.80,
                "delta": 0.03,
                "ciLow": 0.01,
                "ciHigh": 0.05,
                "championVersion": "6",
                "passed": True,
                "reason": "Passed",
            },
            id="passed",
        ),
        pytest.param(
            failed(
                "evaluate-vs-champion",
                "MetricRegression",
                metrics={"candidate_auc": 0.70, "champion_auc": 0.80, "auc_delta": -0.10},
                outputs={"champion_version": "6"},
            ),
            {
                "candidateAuc": 0.70,
                "championAuc": 0.80,
                "delta": -0.10,
                "championVersion": "6",
                "passed": False,
                "reason": "MetricRegression",
            },
            id="metric-regression",
        ),
        pytest.param(
            StageResult(
                "evaluate-vs-champion", ResultStatus.SUCCEEDED, "NoChampion", metrics={"candidate_auc": 0.8}
            ),
            {"candidateAuc": 0.8, "passed": True, "reason": "NoChampion"},
            id="no-champion",
        ),
    ],
)
def test_evaluation_status_comes_from_the_evaluate_result(
    result: StageResult, expected: dict[str, Any]
) -> None:
    world = drive("evaluate-vs-champion", BASE_SPEC)
    ev = job("evaluate-vs-champion", 1, "Succeeded" if result.passed else "Failed", result)
    decision = decide(RUN, BASE_SPEC, world.status, [*world.jobs, ev], world.deployments, T0)
    assert decision.status["evaluation"] == expected
    assert set(EVALUATION_METRICS) == {
        "candidate_auc",
        "champion_auc",
        "auc_delta",
        "auc_delta_ci_low",
        "auc_delta_ci_high",
    }


def test_shadow_mlflow_and_approval_status() -> None:
    spec = spec_of("{continueToCD: true, approval: {decision: Approved, by: ada, comment: ship it}}")
    world = drive("shadow-monitor", spec)
    result = StageResult(
        "shadow-monitor",
        ResultStatus.FAILED,
        "DriftDetected",
        metrics={"agreement": 0.93, "max_psi": 0.41},
        outputs={"drifted_features": "billed_amount, provider_type"},
    )
    decision = decide(
        RUN,
        spec,
        world.status,
        [*world.jobs, job("shadow-monitor", 1, "Failed", result)],
        world.deployments,
        T0,
    )
    status = decision.status
    assert status["shadow"] == {
        "agreement": 0.93,
        "maxPsi": 0.41,
        "driftedFeatures": ["billed_amount", "provider_type"],
        "passed": False,
    }
    assert status["mlflow"] == {
        "modelName": "claim-settlement",
        "experimentId": "3",
        "ciRunId": "ci-run-1",
        "runIds": {
            "mlflow-log": "ci-run-1",
            "full-train": "train-run-1",
            "evaluate-vs-champion": "eval-run-1",
        },
        "modelVersion": "7",
    }
    assert status["approval"] == {
        "decision": "Approved",
        "approvals": 1,
        "required": 1,
        "approvedBy": ["ada"],
        "by": "ada",
        "at": "2026-11-26T04:00:00Z",
        "comment": "ship it",
        "policy": {
            "quorum": 1,
            "fourEyes": True,
            "approvers": {"users": [], "groups": ["claimops:operators"]},
        },
        "decisions": [
            {
                "decision": "Approved",
                "user": "ada",
                "groups": ["claimops:operators", "system:authenticated"],
                "comment": "ship it",
                "at": "2026-11-26T04:00:00Z",
            }
        ],
    }


def test_status_is_plain_yaml_data() -> None:
    world = drive("end", spec_of("{continueToCD: true, approval: {decision: Approved}}"))
    assert yaml.safe_load(yaml.safe_dump(world.status)) == world.status


# --------------------------------------------------------------------------------------------
# Inputs of the Jobs


def created(decision: Decision) -> CreateJob:
    jobs = [a for a in decision.actions if isinstance(a, CreateJob)]
    assert len(jobs) == 1
    return jobs[0]


def test_inputs_default_from_a_minimal_spec() -> None:
    decision = decide(RUN, {"commit": {"sha": "abcdef0"}, "dataset": None}, {}, [], {}, T0)
    assert created(decision).inputs == StageInputs(
        run="demo", commit_sha="abcdef0", requested_by="PipelineRun/claims/demo"
    )


def test_inputs_come_from_the_spec() -> None:
    spec = spec_of(
        """
        dataset: {rows: 5000, seed: 7, window: 2026-02-01/2026-02-28, drift: severe}
        training: {nEstimators: 50, maxDepth: 6, quickSampleFraction: 0.5}
        gates: {minAuc: 0.7, maxAucDrop: 0.05, minShadowAgreement: 0.8, maxPsi: 0.3}
        failureInjection: [SchemaValidation, TrainingError]
        """
    )
    inputs = created(decide(RUN, spec, {}, [], {}, T0)).inputs
    assert inputs.to_args() == [
        *("--run", "demo", "--commit-sha", "1a2b3c4d", "--model-name", "claim-settlement"),
        *("--rows", "5000", "--seed", "7", "--window", "2026-02-01/2026-02-28", "--drift", "severe"),
        *("--failure", "SchemaValidation", "--failure", "TrainingError"),
        *("--n-estimators", "50", "--max-depth", "6", "--quick-sample-fraction", "0.5"),
        *("--min-auc", "0.7", "--max-auc-drop", "0.05", "--min-shadow-agreement", "0.8", "--max-psi", "0.3"),
        *("--requested-by", "PipelineRun/claims/demo"),
    ]


def test_inputs_carry_what_earlier_stages_produced() -> None:
    spec = spec_of("{continueToCD: true, approval: {decision: Approved, by: ada}}")
    world = drive("deploy-staging", spec)
    world.deployments["staging"] = staging(True, "7")
    world.deployments["shadow"] = served("shadow", True, "7")
    inputs = created(decide(RUN, spec, world.status, world.jobs, world.deployments, T0)).inputs
    assert (inputs.candidate_version, inputs.ci_run_id, inputs.requested_by) == ("7", "ci-run-1", "ada")
    assert inputs.production_url == "http://claim-settlement-production.claims:8080"
    assert inputs.shadow_url == "http://claim-settlement-shadow.claims:8080"
    same = stage_inputs(RUN, spec, world.status, {**world.deployments, "shadow": staging(True, "7")})
    assert same.candidate_version == "7"


def test_promote_production_gets_the_release_context_and_production_the_release_summary() -> None:
    spec = spec_of("{continueToCD: true, approval: {decision: Approved, by: ada, comment: ship it}}")
    run = replace(RUN, uid="uid-1", created_at="2026-11-26T03:00:00Z")
    trained = replace(
        job("full-train"), image="claimops/stages:0.1.0", image_id="docker.io/x@sha256:" + "c" * 64
    )
    fresh = drive("full-train", spec)
    status = decide(run, spec, fresh.status, [*fresh.jobs, trained], fresh.deployments, T0).status
    entry = next(e for e in status["stages"] if e["name"] == "full-train")
    assert (entry["image"], entry["imageID"]) == ("claimops/stages:0.1.0", trained.image_id)

    world = drive("promote-production", spec)
    full = next(e for e in world.status["stages"] if e["name"] == "full-train")
    full.update({"image": trained.image, "imageID": trained.image_id})
    promote = created(decide(run, spec, world.status, world.jobs, world.deployments, T0))
    assert promote.stage == "promote-production"
    context = json.loads(promote.inputs.release_context or "{}")
    assert context["pipelineRun"] == {
        "namespace": "claims",
        "name": "demo",
        "uid": "uid-1",
        "createdAt": "2026-11-26T03:00:00Z",
    }
    assert context["spec"]["submitter"] == {"username": "sam", "groups": ["system:authenticated"]}
    assert context["spec"]["decisions"][0] == {
        "decision": "Approved",
        "user": "ada",
        "groups": ["claimops:operators", "system:authenticated"],
        "comment": "ship it",
    }
    assert context["trainedBy"] == {"image": trained.image, "imageID": trained.image_id}
    assert context["status"]["evaluation"]["candidateAuc"] == 0.83
    assert context["status"]["approval"]["decisions"][0]["user"] == "ada"
    assert context["promoter"] == "ada"
    assert created(decide(run, spec, {}, [], {}, T0)).inputs.release_context is None  # promote's only

    outputs = {"alias": "champion", "release_digest": "sha256:" + "d" * 64, "release_uri": "runs:/r/release"}
    done = StageResult("promote-production", ResultStatus.SUCCEEDED, "Passed", outputs=outputs)
    decision = decide(
        run, spec, world.status, [*world.jobs, job("promote-production", result=done)], world.deployments, T0
    )
    apply = next(a for a in decision.actions if isinstance(a, ApplyModelDeployment))
    assert apply.role == "production"
    assert json.loads(apply.release) == {
        "pipelineRun": "demo",
        "submitter": "sam",
        "approvedBy": ["ada"],
        "releaseDigest": outputs["release_digest"],
        "releaseUri": outputs["release_uri"],
    }


# --------------------------------------------------------------------------------------------
# Names and backoff


@pytest.mark.parametrize(
    ("run", "stage", "attempt", "expected"),
    [
        pytest.param("demo", "ci-tests", 1, "demo-ci-tests-1", id="plain"),
        pytest.param(
            "r" * 40,
            "evaluate-vs-champion",
            5,
            "r" * 40 + "-evaluate-vs-champion-5",
            id="longest-allowed-run-fits",
        ),
        pytest.param("r" * 41, "evaluate-vs-champion", 5, None, id="one-too-long-is-hashed"),
        pytest.param("x" * 200, "promote-production", 2, None, id="very-long"),
        pytest.param("Demo.Run_1", "ci-tests", 1, None, id="not-a-dns-label"),
    ],
)
def test_job_name(run: str, stage: str, attempt: int, expected: str | None) -> None:
    name = job_name(run, stage, attempt)
    assert len(name) <= MAX_NAME_LENGTH
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    assert name == job_name(run, stage, attempt)  # deterministic
    assert name != job_name(run, stage, attempt + 1)
    assert name != job_name(run + "x", stage, attempt)
    if expected is not None:
        assert name == expected
    else:
        assert name.endswith(f"-{stage}-{attempt}")
        assert name != f"{run}-{stage}-{attempt}"


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(1, 10.0), (2, 20.0), (3, 40.0), (5, 160.0), (6, 300.0), (9, 300.0)],
    ids=["1", "2", "3", "5", "6-capped", "9-capped"],
)
def test_retry_backoff(attempt: int, seconds: float) -> None:
    assert retry_backoff(attempt) == seconds


# --------------------------------------------------------------------------------------------
# Admission of work: a run without a stage slot waits in phase Queued


FULL = Ticket(admitted=False, limit=2, in_use=2, ahead=1)
FREE = Ticket(admitted=True, limit=2, in_use=1, ahead=0)


def test_a_run_without_a_slot_queues_and_starts_its_job_once_admitted() -> None:
    spec = spec_of("")
    queued = decide(RUN, spec, {}, [], {"production": PRODUCTION}, T0, slot=FULL)
    assert queued.queued
    assert queued.status["phase"] == "Queued"
    assert not [a for a in queued.actions if isinstance(a, CreateJob)]
    summary = get_condition(queued.status["conditions"], "Succeeded")
    assert summary is not None
    assert (summary["status"], summary["reason"]) == ("Unknown", "Queued")
    assert "ci-tests" in summary["message"]
    assert "at most 2" in summary["message"]
    assert queued.status["queue"] == {"stage": "ci-tests", "since": "2026-11-26T04:00:00Z", "limit": 2}
    assert [a.reason for a in queued.actions if isinstance(a, EmitEvent)] == [
        "RunStarted",
        "StageSucceeded",
        "RunQueued",
    ]
    ci = next(s for s in queued.status["stages"] if s["name"] == "ci-tests")
    assert ci["state"] == "Pending"

    later = T0 + timedelta(minutes=5)
    again = decide(RUN, spec, queued.status, [], {"production": PRODUCTION}, later, slot=FULL)
    assert again.status == queued.status  # still queued: no status churn, no second Event
    assert not [a for a in again.actions if isinstance(a, EmitEvent)]

    started = decide(RUN, spec, queued.status, [], {"production": PRODUCTION}, later, slot=FREE)
    assert not started.queued
    assert started.status["phase"] == "Running"
    assert [a.job_name for a in started.actions if isinstance(a, CreateJob)] == [
        job_name("demo", "ci-tests", 1)
    ]
    assert "queue" not in started.status


def test_a_job_already_started_is_never_held_back_by_the_queue() -> None:
    world = drive("full-train", spec_of(""))
    decision = decide(RUN, spec_of(""), world.status, world.jobs, world.deployments, T0, slot=FULL)
    assert decision.status["phase"] == "Running"
    assert not decision.queued


def test_a_cancelled_queued_run_ends_cancelled() -> None:
    queued = decide(RUN, spec_of(""), {}, [], {"production": PRODUCTION}, T0, slot=FULL)
    cancelled = decide(RUN, {**spec_of(""), "cancel": True}, queued.status, [], {}, T0, slot=FULL)
    assert cancelled.status["phase"] == "Cancelled"
    assert not cancelled.queued
    assert "queue" not in cancelled.status


def test_a_lost_stage_pod_is_retried_and_then_fails_the_run_saying_so() -> None:
    spec = spec_of("")
    world = drive("data-validation", spec)
    lost = "its pod was deleted before it reported a result"
    gone = replace(job("data-validation", 1, state="Failed", result=None), pod_lost=lost)
    retry = decide(
        RUN, spec, world.status, [*world.jobs[:-1], gone], world.deployments, T0 + timedelta(minutes=5)
    )
    assert [a.job_name for a in retry.actions if isinstance(a, CreateJob)] == [
        job_name("demo", "data-validation", 2)
    ]
    warning = next(a for a in retry.actions if isinstance(a, EmitEvent) and a.reason == "StageRetry")
    assert "PodLost" in warning.message
    assert lost in warning.message

    again = replace(job("data-validation", 2, state="Failed", result=None), pod_lost=lost)
    jobs = [*world.jobs[:-1], gone, again]
    failed = decide(RUN, spec, retry.status, jobs, world.deployments, T0 + timedelta(minutes=10))
    summary = get_condition(failed.status["conditions"], "Succeeded")
    assert summary is not None
    assert (summary["status"], summary["reason"]) == ("False", "PodLost")
    assert lost in summary["message"]
