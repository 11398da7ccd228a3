"""What happens next for a PipelineRun: a pure function of plain data.

:func:`decide` takes the run's spec and status, the stage Jobs and ModelDeployments the handler
observed, and the current time; it returns the whole new status and the actions the handler
must carry out (like Tekton's ``pipelinerunstate.go`` / ``dag.go``). Nothing here does I/O or
imports Kopf or the Kubernetes client.

The linear flow (``run_stages()`` of the stage table in ``claimops_stages.contract``)::

    commit -> ci-tests -> data-validation -> quick-train -> mlflow-log
      -> [CI-to-CD gate: full-train waits for spec.continueToCD / spec.autoContinueToCD]
      -> full-train -> evaluate-vs-champion -> manual-approval (gate on spec.approval.decision)
      -> deploy-staging (ModelDeployment) -> shadow-monitor -> promote-production

``rollback`` is left out of ``status.stages``: it is not part of a run but an operation on the
production ModelDeployment that can be requested at any time.

Contract with the handler:

* Carry out the actions in order; ``CreateJob`` must tolerate AlreadyExists and ``DeleteJob``
  NotFound (the same action can be returned again while the informer lags behind).
* Write ``Decision.status`` as the whole status; reconcile again after ``requeue_after``
  seconds when it is not None, and whenever the run, one of its Jobs or one of its
  ModelDeployments changes.
* Fill ``ObservedJob.finished_at`` of a failed Job from its ``Failed`` condition's
  lastTransitionTime (retries back off from it), and ``ObservedJob.waiting`` of an active Job
  from its pods (:func:`claimops_operator.pods.first_waiting`); reconcile again when a stage
  pod's container cannot start (no Job event says so).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, Literal, Required, TypedDict, cast

from claimops_stages.approvals import ApprovalPolicy, RecordedDecision, Tally, Verdict, stamped, tally
from claimops_stages.contract import (
    LOCAL_COMMIT_SHA,
    LOCAL_WINDOW,
    SPEC_DEFAULTS,
    Gate,
    Reason,
    Record,
    Stage,
    StageInputs,
    StageKind,
    StageResult,
    recording,
    run_stages,
    stage,
)

from .admission import Ticket
from .conditions import (
    ConditionStatus,
    ConditionType,
    DeploymentReason,
    RunReason,
    format_time,
    initial_conditions,
    mark_failed,
    mark_running,
    mark_succeeded,
    parse_time,
    resolve_unknown,
    set_condition,
    with_generation,
)
from .naming import job_name
from .pods import START_FAILURE_REASONS, ContainerWaiting, start_failure

# --------------------------------------------------------------------------------------------
# Vocabulary


class RunPhase(StrEnum):
    """``status.phase``."""

    PENDING = "Pending"
    RUNNING = "Running"
    QUEUED = "Queued"  # the next stage Job waits for a free stage slot (operator.maxConcurrentStageJobs)
    AWAITING_CD = "AwaitingCD"
    AWAITING_APPROVAL = "AwaitingApproval"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REJECTED = "Rejected"
    CANCELLED = "Cancelled"


TERMINAL_PHASES: frozenset[str] = frozenset(
    {RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.REJECTED, RunPhase.CANCELLED}
)


class StageState(StrEnum):
    """``status.stages[].state``."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    WAITING = "Waiting"
    CANCELLED = "Cancelled"


_DONE_STATES = frozenset({StageState.SUCCEEDED, StageState.SKIPPED})


class StageStatus(TypedDict, total=False):
    """One entry of ``status.stages`` (the CRD's schema of it; mypy checks the keys)."""

    name: Required[str]
    state: str
    attempt: int
    job: str
    startedAt: str
    finishedAt: str
    reason: str
    message: str
    metrics: dict[str, float]
    #: Small string outputs (commit facts, model server role/URL, `<role>-requested`).
    outputs: dict[str, str]
    mlflowRunId: str
    modelVersion: str
    #: The image the stage's pod ran and its digest (the runtime's imageID).
    image: str
    imageID: str
    #: The attempt's Job once the operator has seen it: if that Job is gone later, it was deleted.
    jobUID: str


class EventReason(StrEnum):
    """Reasons of the Events :func:`decide` asks for (one per transition)."""

    RUN_STARTED = "RunStarted"
    RUN_QUEUED = "RunQueued"
    STAGE_STARTED = "StageStarted"
    STAGE_SUCCEEDED = "StageSucceeded"
    STAGE_FAILED = "StageFailed"  # Warning
    STAGE_RETRY = "StageRetry"  # Warning: an attempt failed, another one follows after a backoff
    GATE_WAITING = "GateWaiting"
    GATE_PASSED = "GatePassed"
    GATE_REJECTED = "GateRejected"  # Warning: rejected or timed out
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"  # Warning
    RUN_REJECTED = "RunRejected"  # Warning
    RUN_CANCELLED = "RunCancelled"  # Warning


#: Stage reason while a failed attempt waits for its retry (the failure is in the message).
RETRY_BACKOFF = "RetryBackoff"
#: Job failure reason the Job controller sets when activeDeadlineSeconds ran out.
DEADLINE_EXCEEDED = "DeadlineExceeded"

#: The role whose model server stands in for the shadow when there is no shadow one.
STAGING_ROLE = "staging"
_SERVING_DISABLED_MESSAGE = (
    "The candidate serves in staging; shadow-monitor and promote-production are not available yet"
)

RETRY_BASE_SECONDS = 10.0
RETRY_MAX_SECONDS = 300.0
#: How often to look at the staging ModelDeployment while waiting for it (safety net: the
#: handler should also reconcile when the ModelDeployment changes).
DEPLOYMENT_POLL_SECONDS = 10.0
#: How often a stage whose Job was deleted looks whether that Job's pod has ended.
DELETED_JOB_POLL_SECONDS = 2.0

# Keys stage results use; the operator copies them into status.evaluation / status.shadow /
# status.mlflow. The stage code must report exactly these.
#: evaluate-vs-champion ``metrics`` key -> ``status.evaluation`` field.
EVALUATION_METRICS: Mapping[str, str] = {
    "candidate_auc": "candidateAuc",
    "champion_auc": "championAuc",
    "auc_delta": "delta",
    "auc_delta_ci_low": "ciLow",
    "auc_delta_ci_high": "ciHigh",
}
#: evaluate-vs-champion ``outputs`` key -> ``status.evaluation`` field.
EVALUATION_OUTPUTS: Mapping[str, str] = {"champion_version": "championVersion"}
#: shadow-monitor ``metrics`` key -> ``status.shadow`` field.
SHADOW_METRICS: Mapping[str, str] = {"agreement": "agreement", "max_psi": "maxPsi"}
#: shadow-monitor ``outputs`` key holding the drifted feature names, comma-separated.
SHADOW_DRIFTED_FEATURES_OUTPUT = "drifted_features"
#: ``outputs`` key (any stage, normally mlflow-log) with the MLflow experiment id.
EXPERIMENT_ID_OUTPUT = "experiment_id"
#: ``outputs`` key of the commit marker stage.
COMMIT_SHA_OUTPUT = "sha"


# --------------------------------------------------------------------------------------------
# Inputs and outputs of decide()


@dataclass(frozen=True)
class RunRef:
    name: str
    namespace: str
    generation: int
    uid: str = ""
    created_at: str = ""


JobState = Literal["Active", "Succeeded", "Failed"]


@dataclass(frozen=True)
class ObservedJob:
    """A stage Job as the handler saw it (labels give stage and attempt)."""

    stage: str
    attempt: int
    name: str
    state: JobState
    #: Parsed from the pod's termination message; None when missing or unreadable.
    result: StageResult | None = None
    #: Reason of the Job's Failed condition (DeadlineExceeded, BackoffLimitExceeded, ...).
    failure_reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: A waiting container of the Job's pod (an active Job only): ContainerCreating while it
    #: starts, ImagePullBackOff and the like when it never will.
    waiting: ContainerWaiting | None = None
    #: The finished pod's image and the digest the runtime ran (containerStatuses[].imageID).
    image: str = ""
    image_id: str = ""
    #: A failed Job's pod was lost (deleted, evicted, killed) before it reported a result: how.
    pod_lost: str | None = None
    #: The Job's metadata.uid (for a deleted Job's pod: its owner reference's).
    uid: str = ""
    #: The Job object is gone (deleted) while its pod has not ended: reported as Active, so
    #: the next attempt waits for that pod (two attempts of a stage never run at once).
    job_deleted: bool = False


@dataclass(frozen=True)
class ObservedDeployment:
    """A ModelDeployment's status, by role (staging, shadow, production)."""

    role: str
    ready: bool
    serving_version: str | None
    reason: str = ""
    message: str = ""
    #: In-cluster URL of the model server (passed to shadow-monitor and promote-production).
    url: str | None = None
    #: The status is about the current spec (status.observedGeneration == metadata.generation).
    current: bool = True


@dataclass(frozen=True)
class CreateJob:
    stage: str
    attempt: int
    job_name: str
    inputs: StageInputs
    #: The Job's activeDeadlineSeconds (spec.timeouts.stageSeconds).
    deadline_seconds: int
    #: spec.stageImage; None: the operator's stage image.
    image: str | None = None


@dataclass(frozen=True)
class DeleteJob:
    job_name: str


@dataclass(frozen=True)
class ApplyModelDeployment:
    role: str
    model_name: str
    version: str
    run_name: str
    #: The release summary (JSON) a promotion carries onto the ModelDeployment, or "".
    release: str = ""


@dataclass(frozen=True)
class EmitEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = CreateJob | DeleteJob | ApplyModelDeployment | EmitEvent


@dataclass
class Decision:
    status: dict[str, Any]
    actions: list[Action] = field(default_factory=list)
    #: Seconds until decide() must run again even if nothing changes; None: only on changes.
    requeue_after: float | None = None
    #: The run wants a stage Job and waits for a free slot (phase Queued).
    queued: bool = False


# --------------------------------------------------------------------------------------------
# The spec, with the CRD's defaults


def _section(spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = spec.get(key)
    return value if isinstance(value, Mapping) else {}


def _get(section: Mapping[str, Any], key: str, default: Any) -> Any:
    value = section.get(key)
    return default if value is None else value


def _default(path: str) -> Any:
    return SPEC_DEFAULTS[path]


@dataclass(frozen=True)
class RunSpec:
    """A PipelineRun's spec with the CRD defaults filled in (missing keys are tolerated)."""

    commit_sha: str = LOCAL_COMMIT_SHA
    commit_message: str = ""
    commit_author: str = ""
    model_name: str = _default("model.name")
    rows: int = _default("dataset.rows")
    seed: int = _default("dataset.seed")
    window: str = LOCAL_WINDOW
    drift: str = _default("dataset.drift")
    n_estimators: int = _default("training.nEstimators")
    max_depth: int = _default("training.maxDepth")
    quick_sample_fraction: float = _default("training.quickSampleFraction")
    min_auc: float = _default("gates.minAuc")
    max_auc_drop: float = _default("gates.maxAucDrop")
    min_shadow_agreement: float = _default("gates.minShadowAgreement")
    max_psi: float = _default("gates.maxPsi")
    continue_to_cd: bool = _default("continueToCD")
    auto_continue_to_cd: bool = _default("autoContinueToCD")
    #: A cast decision the admission policy has not recorded (it resets recorded ones).
    approval_decision: str = _default("approval.decision")
    approval_policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    submitter: str = ""
    submitter_groups: tuple[str, ...] = ()
    decisions: tuple[RecordedDecision, ...] = ()
    failures: tuple[str, ...] = ()
    stage_seconds: int = _default("timeouts.stageSeconds")
    approval_seconds: int = _default("timeouts.approvalSeconds")
    retries: int = _default("retries")
    cancel: bool = _default("cancel")
    stage_image: str | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> RunSpec:
        d = cls()
        commit, model, dataset = _section(spec, "commit"), _section(spec, "model"), _section(spec, "dataset")
        training, gates, approval = (
            _section(spec, "training"),
            _section(spec, "gates"),
            _section(spec, "approval"),
        )
        timeouts = _section(spec, "timeouts")
        image = spec.get("stageImage")
        return cls(
            commit_sha=str(_get(commit, "sha", d.commit_sha)),
            commit_message=str(_get(commit, "message", "")),
            commit_author=str(_get(commit, "author", "")),
            model_name=str(_get(model, "name", d.model_name)),
            rows=int(_get(dataset, "rows", d.rows)),
            seed=int(_get(dataset, "seed", d.seed)),
            window=str(_get(dataset, "window", d.window)),
            drift=str(_get(dataset, "drift", d.drift)),
            n_estimators=int(_get(training, "nEstimators", d.n_estimators)),
            max_depth=int(_get(training, "maxDepth", d.max_depth)),
            quick_sample_fraction=float(_get(training, "quickSampleFraction", d.quick_sample_fraction)),
            min_auc=float(_get(gates, "minAuc", d.min_auc)),
            max_auc_drop=float(_get(gates, "maxAucDrop", d.max_auc_drop)),
            min_shadow_agreement=float(_get(gates, "minShadowAgreement", d.min_shadow_agreement)),
            max_psi=float(_get(gates, "maxPsi", d.max_psi)),
            continue_to_cd=bool(_get(spec, "continueToCD", d.continue_to_cd)),
            auto_continue_to_cd=bool(_get(spec, "autoContinueToCD", d.auto_continue_to_cd)),
            approval_decision=str(_get(approval, "decision", d.approval_decision)),
            approval_policy=ApprovalPolicy.parse(approval.get("policy")),
            submitter=str(_get(_section(spec, "submitter"), "username", "")),
            submitter_groups=tuple(str(g) for g in _get(_section(spec, "submitter"), "groups", ())),
            decisions=tuple(RecordedDecision.parse(item) for item in spec.get("decisions") or ()),
            failures=tuple(str(f) for f in _get(spec, "failureInjection", ())),
            stage_seconds=int(_get(timeouts, "stageSeconds", d.stage_seconds)),
            approval_seconds=int(_get(timeouts, "approvalSeconds", d.approval_seconds)),
            retries=int(_get(spec, "retries", d.retries)),
            cancel=bool(_get(spec, "cancel", d.cancel)),
            stage_image=str(image) if image else None,
        )

    def tally(self) -> Tally:
        """The manual gate's votes so far under the run's policy."""
        return tally(self.approval_policy, self.submitter, self.decisions)


def model_name(spec: Mapping[str, Any]) -> str:
    """The registered model a run trains (the handler lists its ModelDeployments before
    :func:`decide`)."""
    return RunSpec.parse(spec).model_name


# --------------------------------------------------------------------------------------------
# Public helpers


def retry_backoff(attempt: int) -> float:
    """Seconds between the failure of ``attempt`` and the start of the next attempt."""
    return min(RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0), RETRY_MAX_SECONDS)


def is_terminal(status: Mapping[str, Any]) -> bool:
    return status.get("phase") in TERMINAL_PHASES


#: The StageInputs a stage is given straight from the spec: the fields both dataclasses name
#: alike (commit_sha, model_name, dataset, training and gates). `failures` is a tuple on the
#: frozen spec and a list on StageInputs, so stage_inputs converts it itself.
_SPEC_INPUTS: tuple[str, ...] = tuple(
    f.name
    for f in fields(StageInputs)
    if f.name in {g.name for g in fields(RunSpec)} and f.name != "failures"
)


def stage_inputs(
    run: RunRef,
    spec: Mapping[str, Any] | RunSpec,
    status: Mapping[str, Any],
    deployments: Mapping[str, ObservedDeployment],
) -> StageInputs:
    """The arguments of a stage Job: the spec plus what earlier stages produced."""
    s = spec if isinstance(spec, RunSpec) else RunSpec.parse(spec)
    stages = {str(e.get("name")): e for e in status.get("stages") or ()}
    production = deployments.get("production")
    shadow = deployments.get("shadow") or deployments.get(STAGING_ROLE)
    candidate, ci_summary = recording(Record.CANDIDATE), recording(Record.CI_SUMMARY)
    return StageInputs(
        run=run.name,
        **{name: getattr(s, name) for name in _SPEC_INPUTS},
        failures=list(s.failures),
        candidate_version=stages.get(candidate.name, {}).get("modelVersion") if candidate else None,
        ci_run_id=stages.get(ci_summary.name, {}).get("mlflowRunId") if ci_summary else None,
        production_url=production.url if production else None,
        shadow_url=shadow.url if shadow else None,
        requested_by=", ".join(s.tally().approved_by) or f"PipelineRun/{run.namespace}/{run.name}",
    )


def release_context(run: RunRef, s: RunSpec, status: Mapping[str, Any]) -> dict[str, Any]:
    """What promote-production's release record says about the run (see
    claimops_stages.release for the shape): the spec as admitted, the results in status, the
    image digest that ran full-train and who approved."""
    stages = {str(e.get("name")): e for e in status.get("stages") or ()}
    candidate = recording(Record.CANDIDATE)
    trained = stages.get(candidate.name, {}) if candidate else {}
    approval = status.get("approval") or {}
    return {
        "pipelineRun": {
            "namespace": run.namespace,
            "name": run.name,
            "uid": run.uid,
            "createdAt": run.created_at,
        },
        "spec": {
            "commit": {"sha": s.commit_sha, "message": s.commit_message, "author": s.commit_author},
            "dataset": {"rows": s.rows, "seed": s.seed, "window": s.window, "drift": s.drift},
            "training": {
                "nEstimators": s.n_estimators,
                "maxDepth": s.max_depth,
                "quickSampleFraction": s.quick_sample_fraction,
            },
            "submitter": {"username": s.submitter, "groups": list(s.submitter_groups)},
            "decisions": [d.to_dict() for d in s.decisions],
        },
        "status": {
            "evaluation": status.get("evaluation") or {},
            "shadow": status.get("shadow") or {},
            "mlflow": status.get("mlflow") or {},
            "approval": {"decisions": approval.get("decisions") or []},
        },
        "trainedBy": {"image": trained.get("image", ""), "imageID": trained.get("imageID", "")},
        "promoter": ", ".join(s.tally().approved_by),
    }


# --------------------------------------------------------------------------------------------
# The decision


class Step(Enum):
    """What a stage handler tells the main loop."""

    ADVANCE = "advance"  # the stage is done: go on with the next one in the same call
    WAIT = "wait"  # something is in progress: stop here
    STOP = "stop"  # the run finished


@dataclass
class _Context:
    run: RunRef
    spec: RunSpec
    status: dict[str, Any]
    jobs: Sequence[ObservedJob]
    deployments: Mapping[str, ObservedDeployment]
    now: datetime
    serving_enabled: bool
    slot: Ticket | None = None
    actions: list[Action] = field(default_factory=list)
    requeue: list[float] = field(default_factory=list)
    queued: bool = False

    @property
    def stamp(self) -> str:
        return format_time(self.now)

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.actions.append(EmitEvent("Warning" if warning else "Normal", str(reason), message))

    def condition(self, type_: str, status: str, reason: str, message: str) -> None:
        self.status["conditions"] = set_condition(
            self.status.get("conditions"),
            type_,
            status,
            reason,
            message,
            now=self.now,
            generation=self.run.generation,
        )

    def in_progress(self, phase: RunPhase, reason: str, message: str) -> None:
        self.status["phase"] = phase
        self.status["conditions"] = mark_running(
            self.status.get("conditions"), reason, message, now=self.now, generation=self.run.generation
        )

    def requeue_in(self, seconds: float) -> None:
        self.requeue.append(max(seconds, 0.0))

    def latest_job(self, stage: str, min_attempt: int) -> ObservedJob | None:
        candidates = [j for j in self.jobs if j.stage == stage and j.attempt >= min_attempt]
        return max(candidates, key=lambda j: j.attempt, default=None)

    def entry(self, name: str) -> StageStatus:
        for entry in self.stages:
            if entry["name"] == name:
                return entry
        raise KeyError(name)

    @property
    def stages(self) -> list[StageStatus]:
        return cast(list[StageStatus], self.status["stages"])

    def decision(self) -> Decision:
        if not self.queued:
            self.status.pop("queue", None)
        requeue = min(self.requeue) if self.requeue else None
        return Decision(_plain(self.status), self.actions, requeue, queued=self.queued)


def _plain(value: Any) -> Any:
    """Status as plain JSON data (enum members become str, so YAML/JSON dumpers accept it)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    return value


def decide(
    run: RunRef,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    jobs: Sequence[ObservedJob],
    deployments: Mapping[str, ObservedDeployment],
    now: datetime,
    serving_enabled: bool = True,
    slot: Ticket | None = None,
) -> Decision:
    """The next status of ``run`` and the actions that get it there (pure; see module doc).

    ``slot`` says whether a new stage Job may start now (None: no limit); a run that wants
    one without it waits in phase Queued until it is reconciled with an admitted ticket."""
    ctx = _Context(
        run=run,
        spec=RunSpec.parse(spec),
        status=copy.deepcopy(dict(status)),
        jobs=jobs,
        deployments=deployments,
        now=now,
        serving_enabled=serving_enabled,
        slot=slot,
    )
    ctx.status["observedGeneration"] = run.generation
    if is_terminal(ctx.status):  # finished runs are stable: only the generation is re-stamped
        ctx.status["conditions"] = with_generation(ctx.status.get("conditions"), run.generation)
        return ctx.decision()
    if not ctx.status.get("stages"):
        _initialize(ctx)
    _normalize_stages(ctx)
    if ctx.spec.cancel:
        _cancel(ctx)
    else:
        _advance(ctx)
    return ctx.decision()


def _initialize(ctx: _Context) -> None:
    ctx.status.update(
        phase=RunPhase.RUNNING,
        currentStage=run_stages()[0].name,
        startedAt=ctx.stamp,
        stages=[],
        mlflow={"modelName": ctx.spec.model_name},
        conditions=initial_conditions(ctx.now, ctx.run.generation),
    )
    ctx.event(EventReason.RUN_STARTED, f"Pipeline run started for commit {ctx.spec.commit_sha[:12]}")


def _normalize_stages(ctx: _Context) -> None:
    """Exactly the linear stages, in order, keeping what the status already knew."""
    known = {str(e.get("name")): e for e in ctx.status.get("stages") or ()}
    ctx.status["stages"] = [
        known.get(s.name) or {"name": s.name, "state": StageState.PENDING} for s in run_stages()
    ]


def _last_without_serving() -> str | None:
    """The stage a run ends with when serving (shadow traffic, promotion) is disabled: the one
    before the first stage that needs it."""
    last = None
    for row in run_stages():
        if row.needs_serving:
            return last
        last = row.name
    return None


def _advance(ctx: _Context) -> None:
    last_without_serving = None if ctx.serving_enabled else _last_without_serving()
    for entry in ctx.stages:
        if entry.get("state") in _DONE_STATES:
            continue
        row = stage(entry["name"])
        ctx.status["currentStage"] = row.name
        step = _HANDLERS[row.kind](ctx, entry)
        if step is not Step.ADVANCE:
            return
        if row.name == last_without_serving:
            _finish(
                ctx,
                RunPhase.SUCCEEDED,
                RunReason.DEPLOYED_TO_STAGING,
                _SERVING_DISABLED_MESSAGE,
            )
            return
    _finish(
        ctx, RunPhase.SUCCEEDED, RunReason.SUCCEEDED, "All stages succeeded; the candidate is the champion"
    )


# --------------------------------------------------------------------------------------------
# Stage handlers, by kind


def _handle_marker(ctx: _Context, entry: StageStatus) -> Step:
    """The commit: a fact to record, no Job."""
    outputs = {COMMIT_SHA_OUTPUT: ctx.spec.commit_sha}
    if ctx.spec.commit_author:
        outputs["author"] = ctx.spec.commit_author
    if ctx.spec.commit_message:
        outputs["message"] = ctx.spec.commit_message.splitlines()[0][:200]
    entry.update(
        {
            "state": StageState.SUCCEEDED,
            "startedAt": ctx.stamp,
            "finishedAt": ctx.stamp,
            "reason": Reason.PASSED,
            "message": f"Commit {ctx.spec.commit_sha}",
            "outputs": outputs,
        }
    )
    ctx.event(EventReason.STAGE_SUCCEEDED, f"Stage {entry['name']} recorded commit {ctx.spec.commit_sha}")
    return Step.ADVANCE


def _handle_job(ctx: _Context, entry: StageStatus) -> Step:
    """A stage carried out by a batch/v1 Job (one Job per attempt)."""
    row = stage(entry["name"])
    attempt = int(entry.get("attempt") or 1)
    observed = ctx.latest_job(row.name, min_attempt=attempt)
    if observed is None:
        if entry.get("state") in (StageState.PENDING, StageState.WAITING):
            if row.gate is Gate.CONTINUE_TO_CD and (step := _cd_gate(ctx, entry)) is not None:
                return step
            if (step := _serve_before(ctx, entry)) is not None:
                return step
            return _start_job(ctx, entry, 1)
        if entry.get("reason") == RETRY_BACKOFF:  # the failed Job is gone: retry now
            return _start_job(ctx, entry, attempt + 1)
        if entry.get("jobUID"):  # seen running, now gone with its pods: deleted
            return _job_deleted(ctx, entry, attempt)
        # Status names a Job never seen (the create met a deleted run's Job of the same name,
        # which the handler then deleted): create it again under the same name.
        ctx.actions.append(_create_job(ctx, entry["name"], attempt, str(entry["job"])))
        _show_running(ctx, entry)
        return Step.WAIT
    if observed.attempt != entry.get("attempt") or observed.name != entry.get("job"):
        _adopt(ctx, entry, observed)
    if observed.uid:
        entry["jobUID"] = observed.uid
    if observed.state == "Active":
        if observed.job_deleted:
            return _wait_for_deleted_job(ctx, entry, observed)
        if (failure := start_failure(observed.waiting)) is not None:
            return _cannot_start(ctx, entry, observed, *failure)
        _show_running(ctx, entry)
        return Step.WAIT
    result = observed.result
    if observed.state == "Succeeded" and result is not None and result.passed:
        if (role := row.serve_after) is not None:
            version = _candidate_version(ctx, entry)
            if version is None:
                return Step.STOP
            release = _release_summary(ctx, result) if result.outputs.get("release_digest") else ""
            if (step := _wait_until_serving(ctx, entry, role, version, release)) is not None:
                return step
        return _job_succeeded(ctx, entry, observed, result)
    return _job_failed(ctx, entry, observed)


def _handle_gate(ctx: _Context, entry: StageStatus) -> Step:
    """manual-approval: waits until the recorded decisions (spec.decisions) reach the run's
    quorum or one rejects; status.approval shows the tally on every pass."""
    spec = ctx.spec
    votes = _record_tally(ctx)
    if entry.get("state") == StageState.PENDING:
        entry.update({"state": StageState.WAITING, "startedAt": ctx.stamp})
        if votes.verdict == Verdict.PENDING:
            ctx.event(EventReason.GATE_WAITING, f"Waiting for manual approval ({votes.summary()})")
    if votes.verdict != Verdict.PENDING:
        return _approval_decided(ctx, entry, votes)
    message = votes.summary()
    if spec.approval_decision in (Verdict.APPROVED, Verdict.REJECTED) and not spec.decisions:
        # Without the chart's admission policies nothing records who decided: say so.
        message += (
            f"; spec.approval.decision is {spec.approval_decision} but no decision was recorded"
            " (is the chart's approvals admission policy installed?)"
        )
    entry["message"] = message
    ctx.condition(ConditionType.APPROVED, ConditionStatus.UNKNOWN, RunReason.AWAITING_APPROVAL, message)
    deadline = _started(ctx, entry) + timedelta(seconds=spec.approval_seconds)
    if ctx.now >= deadline:
        message = f"No approval decision within {spec.approval_seconds}s ({votes.summary()})"
        _gate_timed_out(ctx, entry, message, StageState.FAILED)
        ctx.condition(ConditionType.APPROVED, ConditionStatus.FALSE, RunReason.APPROVAL_TIMEOUT, message)
        _finish(ctx, RunPhase.REJECTED, RunReason.APPROVAL_TIMEOUT, message, failed=entry["name"])
        return Step.STOP
    ctx.in_progress(RunPhase.AWAITING_APPROVAL, RunReason.AWAITING_APPROVAL, "Waiting for manual approval")
    ctx.requeue_in((deadline - ctx.now).total_seconds())
    return Step.WAIT


def _record_tally(ctx: _Context) -> Tally:
    spec = ctx.spec
    votes = spec.tally()
    previous = ctx.status.get("approval") or {}
    approval: dict[str, Any] = {
        "decision": votes.verdict.value,
        "approvals": votes.approvals,
        "required": votes.required,
        "approvedBy": list(votes.approved_by),
        "policy": spec.approval_policy.to_dict(),
        "decisions": stamped(spec.decisions, previous.get("decisions") or (), ctx.stamp),
    }
    decided = votes.rejection.user if votes.rejection else ", ".join(votes.approved_by)
    if votes.verdict != Verdict.PENDING:
        approval.update({"by": decided, "at": previous.get("at") or ctx.stamp})
        comments = [d.comment for d in spec.decisions if d.decision in (Verdict.APPROVED, Verdict.REJECTED)]
        if votes.rejection is not None and votes.rejection.comment:
            approval["comment"] = votes.rejection.comment
        elif votes.verdict == Verdict.APPROVED and any(comments):
            approval["comment"] = "; ".join(c for c in comments if c)
    if approval != {k: previous.get(k) for k in approval} or set(previous) - set(approval):
        ctx.status["approval"] = approval
    return votes


def _handle_deployment(ctx: _Context, entry: StageStatus) -> Step:
    """deploy-staging: apply the staging ModelDeployment, wait until it serves the candidate."""
    version = _candidate_version(ctx, entry)
    if version is None:
        return Step.STOP
    if entry.get("state") == StageState.PENDING:
        entry.update({"state": StageState.RUNNING, "startedAt": ctx.stamp, "attempt": 1})
        ctx.event(EventReason.STAGE_STARTED, f"Stage {entry['name']}: deploying version {version} to staging")
        ctx.condition(
            ConditionType.DEPLOYED,
            ConditionStatus.UNKNOWN,
            RunReason.DEPLOYING,
            f"Deploying version {version} to staging",
        )
    role = stage(entry["name"]).serve_after or STAGING_ROLE
    step = _wait_until_serving(ctx, entry, role, version)
    if step is not None:
        return step
    observed = ctx.deployments[role]
    entry.update(
        {
            "state": StageState.SUCCEEDED,
            "finishedAt": ctx.stamp,
            "reason": RunReason.STAGING_READY,
            "message": f"Staging serves version {version}",
            "outputs": {
                k: v for k, v in {"role": role, "version": version, "url": observed.url}.items() if v
            },
        }
    )
    ctx.event(EventReason.STAGE_SUCCEEDED, f"Stage {entry['name']}: staging serves version {version}")
    ctx.condition(
        ConditionType.DEPLOYED,
        ConditionStatus.TRUE,
        RunReason.STAGING_READY,
        f"Staging serves version {version}",
    )
    return Step.ADVANCE


def _serve_before(ctx: _Context, entry: StageStatus) -> Step | None:
    """For a Job stage that needs a model server first (shadow-monitor): None once the role
    serves the candidate, else the wait (the stage shows Waiting meanwhile)."""
    role = stage(entry["name"]).serve_before
    if role is None:
        return None
    version = _candidate_version(ctx, entry)
    if version is None:
        return Step.STOP
    if entry.get("state") == StageState.PENDING:
        entry.update({"state": StageState.WAITING, "startedAt": ctx.stamp})
        ctx.event(EventReason.STAGE_STARTED, f"Stage {entry['name']}: serving version {version} as {role}")
    if (step := _wait_until_serving(ctx, entry, role, version)) is not None:
        return step
    return _wait_for_baseline(ctx, entry)


def _wait_for_baseline(ctx: _Context, entry: StageStatus) -> Step | None:
    """None once production (what the shadow is compared with) is Ready, or there is none to
    wait for. Scoring against a production server that is down (restarting after a node
    restart, say) would blame its errors on the candidate."""
    production = ctx.deployments.get("production")
    if production is None or production.ready or production.reason == DeploymentReason.SCALED_TO_ZERO:
        return None
    detail = f" ({production.reason}: {production.message})" if production.reason else ""
    deadline = _started(ctx, entry) + timedelta(seconds=ctx.spec.stage_seconds)
    if ctx.now >= deadline:
        message = (
            f"Production, the baseline the shadow is compared with, was not Ready within "
            f"{ctx.spec.stage_seconds}s{detail}"
        )
        _stage_failed(ctx, entry, RunReason.STAGE_TIMEOUT, message)
        return Step.STOP
    entry["message"] = f"Waiting for production (the shadow's baseline) to be Ready{detail}"
    ctx.in_progress(RunPhase.RUNNING, RunReason.RUNNING, f"Stage {entry['name']}: {entry['message']}")
    ctx.requeue_in(min((deadline - ctx.now).total_seconds(), DEPLOYMENT_POLL_SECONDS))
    return Step.WAIT


def _candidate_version(ctx: _Context, entry: StageStatus) -> str | None:
    """The version the candidate stage (full-train) registered; fails the stage when there is none."""
    candidate = recording(Record.CANDIDATE)
    version = ctx.entry(candidate.name).get("modelVersion") if candidate else None
    if not version:
        producer = candidate.name if candidate else "no stage"
        _stage_failed(ctx, entry, Reason.INVALID_INPUT, f"{producer} reported no model version to deploy")
        return None
    return str(version)


def _release_summary(ctx: _Context, result: StageResult) -> str:
    """Who released the version and where its record is: the production ModelDeployment's
    history keeps it."""
    votes = ctx.spec.tally()
    summary = {
        "pipelineRun": ctx.run.name,
        "submitter": ctx.spec.submitter,
        "approvedBy": list(votes.approved_by),
        "releaseDigest": result.outputs.get("release_digest", ""),
        "releaseUri": result.outputs.get("release_uri", ""),
    }
    return json.dumps(summary, sort_keys=True)


def _wait_until_serving(
    ctx: _Context, entry: StageStatus, role: str, version: str, release: str = ""
) -> Step | None:
    """None once the `role` ModelDeployment is Ready on `version`; until then the actions that
    get it there and WAIT, or STOP when the stage's time is up."""
    observed = ctx.deployments.get(role)
    if observed is not None and observed.ready and observed.serving_version == version:
        return None
    detail = f" ({observed.reason}: {observed.message})" if observed and observed.reason else ""
    if observed is not None and observed.current and observed.reason in START_FAILURE_REASONS:
        # Its model server cannot start (the ModelDeployment says why): no use waiting.
        message = f"The {role} ModelDeployment cannot serve version {version}: {observed.message}"
        _stage_failed(ctx, entry, observed.reason, message)
        return Step.STOP
    deadline = _started(ctx, entry) + timedelta(seconds=ctx.spec.stage_seconds)
    if ctx.now >= deadline:
        message = f"The {role} ModelDeployment did not serve version {version} within {ctx.spec.stage_seconds}s{detail}"
        _stage_failed(ctx, entry, RunReason.STAGE_TIMEOUT, message)
        return Step.STOP
    # Apply once per version, and again only when the ModelDeployment is gone or settled on
    # another version (someone changed it back): each server-side apply is an API write.
    requested = f"{role}-requested"
    outputs = entry.setdefault("outputs", {})
    settled_elsewhere = observed is not None and observed.ready and observed.serving_version != version
    if observed is None or outputs.get(requested) != version or settled_elsewhere:
        ctx.actions.append(ApplyModelDeployment(role, ctx.spec.model_name, version, ctx.run.name, release))
        outputs[requested] = version
    entry["message"] = f"Waiting for {role} to serve version {version}{detail}"
    ctx.in_progress(RunPhase.RUNNING, RunReason.RUNNING, f"Stage {entry['name']}: {entry['message']}")
    ctx.requeue_in(min((deadline - ctx.now).total_seconds(), DEPLOYMENT_POLL_SECONDS))
    return Step.WAIT


_HANDLERS: Mapping[StageKind, Callable[[_Context, StageStatus], Step]] = {
    StageKind.MARKER: _handle_marker,
    StageKind.JOB: _handle_job,
    StageKind.GATE: _handle_gate,
    StageKind.DEPLOYMENT: _handle_deployment,
}


# --------------------------------------------------------------------------------------------
# Jobs


def _create_job(ctx: _Context, stage_name: str, attempt: int, name: str) -> CreateJob:
    inputs = stage_inputs(ctx.run, ctx.spec, ctx.status, ctx.deployments)
    if "release_context" in stage(stage_name).arguments:  # promote-production's record
        context = json.dumps(release_context(ctx.run, ctx.spec, ctx.status), sort_keys=True)
        inputs = replace(inputs, release_context=context)
    return CreateJob(stage_name, attempt, name, inputs, ctx.spec.stage_seconds, ctx.spec.stage_image)


def _start_job(ctx: _Context, entry: StageStatus, attempt: int) -> Step:
    if ctx.slot is not None and not ctx.slot.admitted:
        return _queue(ctx, entry)
    name = job_name(ctx.run.name, entry["name"], attempt)
    _clear_outcome(entry)
    entry.update({"state": StageState.RUNNING, "attempt": attempt, "job": name, "startedAt": ctx.stamp})
    ctx.actions.append(_create_job(ctx, entry["name"], attempt, name))
    ctx.event(EventReason.STAGE_STARTED, f"Stage {entry['name']} started: Job {name} (attempt {attempt})")
    _show_running(ctx, entry)
    return Step.WAIT


def _queue(ctx: _Context, entry: StageStatus) -> Step:
    """No free stage slot: wait in phase Queued (woken when one frees, in creation order)."""
    assert ctx.slot is not None
    ctx.queued = True
    queue = ctx.status.get("queue") or {}
    if ctx.status.get("phase") != RunPhase.QUEUED or queue.get("stage") != entry["name"]:
        ctx.event(
            EventReason.RUN_QUEUED,
            f"Stage {entry['name']} is queued: {ctx.slot.in_use} of {ctx.slot.limit} stage slots in use, "
            f"{ctx.slot.ahead} earlier run(s) waiting",
        )
        queue = {"stage": entry["name"], "since": ctx.stamp}
    ctx.status["queue"] = {**queue, "limit": ctx.slot.limit}
    ctx.status["phase"] = RunPhase.QUEUED
    ctx.status["conditions"] = mark_running(
        ctx.status.get("conditions"),
        RunReason.QUEUED,
        f"Stage {entry['name']} waits for a free stage slot (at most {ctx.slot.limit} stage Jobs run "
        "at once; queued runs start in creation order)",
        now=ctx.now,
        generation=ctx.run.generation,
    )
    return Step.WAIT


def _clear_outcome(entry: StageStatus) -> None:
    """Forget what an earlier attempt ended with (a new attempt starts)."""
    entry.pop("finishedAt", None)
    entry.pop("reason", None)
    entry.pop("message", None)
    entry.pop("jobUID", None)


def _adopt(ctx: _Context, entry: StageStatus, job: ObservedJob) -> None:
    """A Job the status does not know (a status write was lost): take it over, never re-create it."""
    _clear_outcome(entry)
    entry.update(
        {
            "state": StageState.RUNNING,
            "attempt": job.attempt,
            "job": job.name,
            "startedAt": format_time(job.started_at or ctx.now),
        }
    )
    ctx.event(
        EventReason.STAGE_STARTED, f"Stage {entry['name']}: adopted Job {job.name} (attempt {job.attempt})"
    )


def _wait_for_deleted_job(ctx: _Context, entry: StageStatus, job: ObservedJob) -> Step:
    """The attempt's Job was deleted but its pod is still stopping: nothing starts until it has
    ended. A pod's end does not wake the handler (pod_changed reacts to start failures only),
    so look again shortly."""
    entry["state"] = StageState.RUNNING
    message = f"Job {job.name} was deleted; waiting for its pod to stop (attempt {job.attempt})"
    ctx.in_progress(RunPhase.RUNNING, RunReason.RUNNING, f"Stage {entry['name']}: {message}")
    ctx.requeue_in(DELETED_JOB_POLL_SECONDS)
    return Step.WAIT


def _job_deleted(ctx: _Context, entry: StageStatus, attempt: int) -> Step:
    """The attempt's Job was deleted (by hand, or with its pods by a cleanup) before it finished:
    the attempt failed and, within spec.retries, the next one starts now (its pod has ended)."""
    message = f"Job {entry.get('job')} was deleted before it finished"
    if attempt <= ctx.spec.retries:
        ctx.event(
            EventReason.STAGE_RETRY,
            f"Stage {entry['name']} attempt {attempt} failed ({RunReason.JOB_DELETED}: {message}); "
            f"attempt {attempt + 1} starts now",
            warning=True,
        )
        return _start_job(ctx, entry, attempt + 1)
    if attempt > 1:
        message = f"{message} (after {attempt} attempts)"
    _stage_failed(ctx, entry, RunReason.JOB_DELETED, message)
    return Step.STOP


def _show_running(ctx: _Context, entry: StageStatus) -> None:
    entry["state"] = StageState.RUNNING
    message = f"Stage {entry['name']} is running (attempt {entry.get('attempt', 1)})"
    ctx.in_progress(RunPhase.RUNNING, RunReason.RUNNING, message)


def _job_succeeded(ctx: _Context, entry: StageStatus, job: ObservedJob, result: StageResult) -> Step:
    _copy_result(entry, result)
    if job.image_id:  # what the release record names as the image that ran the stage
        entry.update({"image": job.image, "imageID": job.image_id})
    entry.update({"state": StageState.SUCCEEDED, "finishedAt": format_time(job.finished_at or ctx.now)})
    _record_result(ctx, entry["name"], result)
    ctx.event(
        EventReason.STAGE_SUCCEEDED,
        f"Stage {entry['name']} succeeded: {result.reason} {result.message}".strip(),
    )
    if _closes(entry["name"], ConditionType.CI_PASSED):
        ctx.condition(ConditionType.CI_PASSED, ConditionStatus.TRUE, RunReason.PASSED, "All CI stages passed")
    return Step.ADVANCE


def _job_failed(ctx: _Context, entry: StageStatus, job: ObservedJob) -> Step:
    reason, message, retryable = _classify_failure(ctx, job)
    announced = entry.get("reason") == RETRY_BACKOFF  # the StageRetry Event went out already
    if job.result is not None:
        _copy_result(entry, job.result)
        _record_result(ctx, entry["name"], job.result)
    if retryable and job.attempt <= ctx.spec.retries:
        return _retry(ctx, entry, job, reason, message, announced)
    if job.attempt > 1:
        message = f"{message} (after {job.attempt} attempts)"
    _stage_failed(ctx, entry, reason, message, finished_at=job.finished_at)
    return Step.STOP


def _cannot_start(ctx: _Context, entry: StageStatus, job: ObservedJob, reason: str, message: str) -> Step:
    """The Job's container will never start (missing image, Secret key, ...): fail the stage
    now, not at the Job's deadline, and without a retry (the next attempt meets the same)."""
    # The pod would keep pulling until the deadline; the status and Events keep the why.
    ctx.actions.append(DeleteJob(job.name))
    _stage_failed(ctx, entry, reason, f"Job {job.name}: {message}")
    return Step.STOP


def _retryable(row: Stage, reason: str) -> bool:
    # The same pod spec meets the same missing image or Secret key on the next attempt.
    return reason not in START_FAILURE_REASONS and row.retryable(reason)


def _classify_failure(ctx: _Context, job: ObservedJob) -> tuple[str, str, bool]:
    """(reason, message, retryable) of a finished Job that did not pass."""
    result = job.result
    if job.failure_reason == DEADLINE_EXCEEDED:
        return (
            RunReason.STAGE_TIMEOUT,
            f"Job {job.name} exceeded its deadline of {ctx.spec.stage_seconds}s",
            True,
        )
    if result is not None and not result.passed:
        return (
            result.reason,
            result.message or f"Job {job.name} failed",
            _retryable(stage(job.stage), result.reason),
        )
    if result is not None:  # the Job failed after its container reported success
        return RunReason.JOB_FAILED, f"Job {job.name} failed ({job.failure_reason or 'unknown reason'})", True
    if job.state == "Succeeded":
        return RunReason.JOB_FAILED, f"Job {job.name} completed but its result could not be read", True
    if job.pod_lost:
        return RunReason.POD_LOST, f"Job {job.name} failed: {job.pod_lost}", True
    why = job.failure_reason or "unknown reason"
    return RunReason.JOB_FAILED, f"Job {job.name} failed ({why}) without a readable result", True


def _retry(
    ctx: _Context, entry: StageStatus, job: ObservedJob, reason: str, message: str, announced: bool
) -> Step:
    backoff = retry_backoff(job.attempt)
    failed_at = job.finished_at or job.started_at or ctx.now
    retry_at = failed_at + timedelta(seconds=backoff)
    if not announced:
        ctx.event(
            EventReason.STAGE_RETRY,
            f"Stage {entry['name']} attempt {job.attempt} failed ({reason}: {message}); "
            f"attempt {job.attempt + 1} starts after {backoff:g}s",
            warning=True,
        )
    if ctx.now >= retry_at:
        return _start_job(ctx, entry, job.attempt + 1)
    entry.update(
        {
            "state": StageState.RUNNING,
            "reason": RETRY_BACKOFF,
            "message": f"Attempt {job.attempt} failed ({reason}: {message}); retrying at {format_time(retry_at)}",
        }
    )
    ctx.in_progress(RunPhase.RUNNING, RunReason.RUNNING, f"Stage {entry['name']}: {entry['message']}")
    ctx.requeue_in((retry_at - ctx.now).total_seconds())
    return Step.WAIT


def _copy_result(entry: StageStatus, result: StageResult) -> None:
    entry.update({"reason": result.reason, "message": result.message, "metrics": dict(result.metrics)})
    entry["outputs"] = dict(result.outputs)
    # Only what this attempt reported: an earlier attempt's run id or version must not stay.
    entry.pop("mlflowRunId", None)
    entry.pop("modelVersion", None)
    if result.mlflow_run_id:
        entry["mlflowRunId"] = result.mlflow_run_id
    if result.model_version:
        entry["modelVersion"] = result.model_version


# --------------------------------------------------------------------------------------------
# Stage results -> status.mlflow / status.evaluation / status.shadow


def _record_result(ctx: _Context, name: str, result: StageResult) -> None:
    row = stage(name)
    mlflow = ctx.status.setdefault("mlflow", {})
    mlflow.setdefault("modelName", ctx.spec.model_name)
    if result.mlflow_run_id:
        mlflow.setdefault("runIds", {})[name] = result.mlflow_run_id
        if row.record is Record.CI_SUMMARY:
            mlflow["ciRunId"] = result.mlflow_run_id
    if result.outputs.get(EXPERIMENT_ID_OUTPUT):
        mlflow["experimentId"] = result.outputs[EXPERIMENT_ID_OUTPUT]
    if row.record is Record.CANDIDATE and result.model_version:
        mlflow["modelVersion"] = result.model_version
    recorder = _RESULT_RECORDERS.get(row.record)
    if recorder is not None:
        recorder(ctx, result)


def _record_evaluation(ctx: _Context, result: StageResult) -> None:
    evaluation: dict[str, Any] = {
        f: result.metrics[k] for k, f in EVALUATION_METRICS.items() if k in result.metrics
    }
    evaluation.update({f: result.outputs[k] for k, f in EVALUATION_OUTPUTS.items() if result.outputs.get(k)})
    evaluation.update(passed=result.passed, reason=result.reason)
    ctx.status["evaluation"] = evaluation


def _record_shadow(ctx: _Context, result: StageResult) -> None:
    shadow: dict[str, Any] = {f: result.metrics[k] for k, f in SHADOW_METRICS.items() if k in result.metrics}
    drifted = result.outputs.get(SHADOW_DRIFTED_FEATURES_OUTPUT, "")
    shadow.update(driftedFeatures=[f.strip() for f in drifted.split(",") if f.strip()], passed=result.passed)
    ctx.status["shadow"] = shadow


#: Records with more than the status.mlflow fields above.
_RESULT_RECORDERS: Mapping[Record, Callable[[_Context, StageResult], None]] = {
    Record.EVALUATION: _record_evaluation,
    Record.SHADOW: _record_shadow,
}


def _closes(name: str, condition: ConditionType) -> bool:
    """`name` is the run's last stage owning `condition`: its success makes it True."""
    owners = [s.name for s in run_stages() if s.condition == condition]
    return bool(owners) and owners[-1] == name


# --------------------------------------------------------------------------------------------
# Gates


def _started(ctx: _Context, entry: StageStatus) -> datetime:
    return parse_time(entry.get("startedAt")) or ctx.now


def _cd_gate(ctx: _Context, entry: StageStatus) -> Step | None:
    """The CI-to-CD gate in front of full-train; None once the run may continue."""
    spec = ctx.spec
    if spec.continue_to_cd or spec.auto_continue_to_cd:
        how = "spec.continueToCD" if spec.continue_to_cd else "spec.autoContinueToCD"
        ctx.event(EventReason.GATE_PASSED, f"Continued to CD ({how})")
        return None
    if entry.get("state") == StageState.PENDING:
        entry.update(
            {"state": StageState.WAITING, "startedAt": ctx.stamp, "message": "Waiting for spec.continueToCD"}
        )
        ctx.event(EventReason.GATE_WAITING, "CI passed; waiting for spec.continueToCD to start CD")
    deadline = _started(ctx, entry) + timedelta(seconds=spec.approval_seconds)
    if ctx.now >= deadline:
        message = f"Not continued to CD within {spec.approval_seconds}s"
        _gate_timed_out(ctx, entry, message, StageState.SKIPPED)
        _finish(ctx, RunPhase.REJECTED, RunReason.APPROVAL_TIMEOUT, message)
        return Step.STOP
    ctx.in_progress(RunPhase.AWAITING_CD, RunReason.AWAITING_CD, "CI passed; waiting for spec.continueToCD")
    ctx.requeue_in((deadline - ctx.now).total_seconds())
    return Step.WAIT


def _gate_timed_out(ctx: _Context, entry: StageStatus, message: str, state: StageState) -> None:
    entry.update(
        {"state": state, "finishedAt": ctx.stamp, "reason": RunReason.APPROVAL_TIMEOUT, "message": message}
    )
    ctx.event(EventReason.GATE_REJECTED, message, warning=True)


def _approval_decided(ctx: _Context, entry: StageStatus, votes: Tally) -> Step:
    message = votes.summary()
    entry["finishedAt"] = ctx.stamp
    if votes.verdict == Verdict.APPROVED:
        entry.update({"state": StageState.SUCCEEDED, "reason": RunReason.APPROVED, "message": message})
        ctx.event(EventReason.GATE_PASSED, message)
        ctx.condition(ConditionType.APPROVED, ConditionStatus.TRUE, RunReason.APPROVED, message)
        return Step.ADVANCE
    entry.update({"state": StageState.FAILED, "reason": RunReason.REJECTED, "message": message})
    ctx.event(EventReason.GATE_REJECTED, message, warning=True)
    ctx.condition(ConditionType.APPROVED, ConditionStatus.FALSE, RunReason.REJECTED, message)
    _finish(ctx, RunPhase.REJECTED, RunReason.REJECTED, message, failed=entry["name"])
    return Step.STOP


# --------------------------------------------------------------------------------------------
# Endings


def _stage_failed(
    ctx: _Context, entry: StageStatus, reason: str, message: str, finished_at: datetime | None = None
) -> None:
    entry.update(
        {
            "state": StageState.FAILED,
            "finishedAt": format_time(finished_at or ctx.now),
            "reason": reason,
            "message": message,
        }
    )
    ctx.event(EventReason.STAGE_FAILED, f"Stage {entry['name']} failed ({reason}): {message}", warning=True)
    owner = _owning_condition(entry["name"])
    if owner is not None:
        ctx.condition(owner, ConditionStatus.FALSE, reason, message)
    _finish(ctx, RunPhase.FAILED, reason, f"Stage {entry['name']} failed: {message}", failed=entry["name"])


def _owning_condition(name: str) -> ConditionType | None:
    """The gate condition a stage's failure decides (besides Succeeded)."""
    owned = stage(name).condition
    return None if owned is None else ConditionType(owned)


_FINISH_EVENTS: Mapping[RunPhase, tuple[EventReason, bool]] = {
    RunPhase.SUCCEEDED: (EventReason.RUN_SUCCEEDED, False),
    RunPhase.FAILED: (EventReason.RUN_FAILED, True),
    RunPhase.REJECTED: (EventReason.RUN_REJECTED, True),
    RunPhase.CANCELLED: (EventReason.RUN_CANCELLED, True),
}


def _finish(ctx: _Context, phase: RunPhase, reason: str, message: str, failed: str | None = None) -> None:
    """End the run: stages not reached are Skipped, no condition stays Unknown."""
    for entry in ctx.stages:
        if entry["name"] != failed and entry.get("state") in (StageState.PENDING, StageState.WAITING):
            entry.update({"state": StageState.SKIPPED})
    gen = ctx.run.generation
    conditions = ctx.status.get("conditions")
    if phase is RunPhase.SUCCEEDED:
        conditions = mark_succeeded(conditions, message, now=ctx.now, generation=gen, reason=reason)
    else:
        conditions = mark_failed(conditions, reason, message, now=ctx.now, generation=gen)
    leftover = RunReason.CANCELLED if phase is RunPhase.CANCELLED else RunReason.NOT_REACHED
    ctx.status["conditions"] = resolve_unknown(
        conditions, leftover, f"The run ended ({reason}) before this was decided", now=ctx.now, generation=gen
    )
    ctx.status.update(phase=phase, finishedAt=ctx.stamp)
    event_reason, warning = _FINISH_EVENTS[phase]
    ctx.event(event_reason, f"Pipeline run {phase.value.lower()} ({reason}): {message}", warning=warning)


def _cancel(ctx: _Context) -> None:
    """spec.cancel: delete what runs, mark the active stage Cancelled and the rest Skipped."""
    finished = {j.name for j in ctx.jobs if j.state != "Active"}
    to_delete = [j.name for j in ctx.jobs if j.state == "Active"]
    cancelled = "nothing was running"
    for entry in ctx.stages:
        state = entry.get("state")
        if state in (StageState.RUNNING, StageState.WAITING):
            job = entry.get("job")
            if state == StageState.RUNNING and job and job not in finished and job not in to_delete:
                to_delete.append(str(job))
            entry.update(
                {"state": StageState.CANCELLED, "finishedAt": ctx.stamp, "reason": RunReason.CANCELLED}
            )
            entry["message"] = "Cancelled by spec.cancel"
            ctx.status["currentStage"] = entry["name"]
            cancelled = f"stage {entry['name']} was cancelled"
    ctx.actions.extend(DeleteJob(name) for name in sorted(to_delete))
    _finish(ctx, RunPhase.CANCELLED, RunReason.CANCELLED, f"Cancelled by spec.cancel; {cancelled}")
