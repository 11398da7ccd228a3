"""Response models of the JSON API: what `/openapi.json` documents for each route.

The views (`views.py`, `inspector.py`, the gateways) build plain dicts; these models describe
those dicts, they do not reshape them. So every model lets unknown fields through
(`extra="allow"`), and the routes use :class:`DocumentedRoute`, which leaves out the fields a
view did not set: a response has exactly the keys it had before it was documented, and the
browser code and API clients that read them see no change.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field


class DocumentedRoute(APIRoute):
    """A route whose response model documents the body and drops only unset fields (optional
    fields default to None in the model, but must not appear as `null` in the JSON)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["response_model_exclude_unset"] = True
        super().__init__(*args, **kwargs)


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------------------------
# Errors (app.py writes them for every UiError, validation error and HTTP error)


class FieldError(ApiModel):
    loc: list[str | int]
    msg: str


class ErrorBody(ApiModel):
    error: str = Field(description="Stable CamelCase code, e.g. InvalidInput, NotFound, Conflict.")
    detail: str | list[FieldError] = Field(description="What went wrong (per field for InvalidInput).")


# --------------------------------------------------------------------------------------------
# Session and health


class SessionInfo(ApiModel):
    user: str | None
    csrfToken: str = Field(description="Send as X-CSRF-Token with every mutation.")
    readOnly: bool
    impersonateGroup: str


class KubernetesHealth(ApiModel):
    runsSynced: bool
    deploymentsSynced: bool
    errors: list[str]


class MlflowHealth(ApiModel):
    ok: bool
    url: str


class Health(ApiModel):
    status: str = Field(description="ok or degraded")
    version: str
    namespace: str
    kubernetes: KubernetesHealth
    mlflow: MlflowHealth
    readOnly: bool


# --------------------------------------------------------------------------------------------
# PipelineRuns and ModelDeployments (fields as the CRDs define them)


class Condition(ApiModel):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None
    lastTransitionTime: str | None = None
    observedGeneration: int | None = None


class StageStatus(ApiModel):
    """One entry of a PipelineRun's `status.stages` (empty for a stage not reached yet)."""

    name: str | None = None
    state: str | None = None
    attempt: int | None = None
    job: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    reason: str | None = None
    message: str | None = None
    metrics: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    mlflowRunId: str | None = None
    modelVersion: str | None = None


class RunSummary(ApiModel):
    name: str
    created: str
    resourceVersion: str
    sha: str
    shortSha: str
    message: str = Field(description="The commit message's first line.")
    author: str
    phase: str
    terminal: bool
    currentStage: str
    reason: str = Field(description="The Succeeded condition's reason.")
    conditionMessage: str
    approvalDecision: str
    approvedBy: str
    auc: float | None
    modelVersion: str
    failureInjection: list[str]
    drift: str
    progress: str = Field(description="Finished/total stages, e.g. 3/12.")
    durationSeconds: float | None = Field(
        default=None, description="From the run's start to its end, or to now while it runs."
    )
    duration: str = Field(default="", description="durationSeconds for people, e.g. '4 min 05 s'.")


class RunActions(ApiModel):
    """Which buttons make sense now (the API server and the operator still decide)."""

    continueToCD: bool
    approve: bool
    cancel: bool


class RunStatus(RunSummary):
    spec: dict[str, Any]
    stages: list[StageStatus]
    conditions: list[Condition]
    approval: dict[str, Any]
    evaluation: dict[str, Any]
    shadow: dict[str, Any]
    mlflow: dict[str, Any]
    actions: RunActions


class RollbackResult(ApiModel):
    name: str = Field(description="The production ModelDeployment.")
    rollback: dict[str, Any] = Field(description="Its spec.rollback as patched.")


class Deployment(ApiModel):
    name: str
    role: str | None
    model: str | None
    requestedVersion: str | None
    servingVersion: str | None
    ready: bool
    readyReason: str
    readyMessage: str
    readyReplicas: int
    replicas: int
    url: str | None
    protocols: list[dict[str, str]] = Field(
        default_factory=list,
        description="What the model server speaks at url: name (predict, v2, mlflow), title, scoring path.",
    )
    history: list[dict[str, Any]]
    rolledBackFrom: str | None
    rollback: dict[str, Any] | None
    rolledBack: Condition
    pipelineRun: str | None


# --------------------------------------------------------------------------------------------
# Stages and the step inspector


class StageDefinition(ApiModel):
    name: str
    phase: str
    kind: str
    title: str
    description: str


class StageCode(ApiModel):
    name: str
    title: str
    kind: str
    runsIn: str
    module: str
    file: str
    function: str
    startLine: int
    endLine: int | None
    source: str


class EnvVar(ApiModel):
    name: str
    value: str = Field(description="The value, or where a reference points (never resolved).")


class StageJob(ApiModel):
    name: str | None = None
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] | None = None
    resources: dict[str, Any] | None = None
    activeDeadlineSeconds: int | None = None
    note: str | None = None


class StageConfig(ApiModel):
    name: str
    title: str
    phase: str
    kind: str
    description: str
    job: StageJob | None = Field(default=None, description="The run's Job, or the defaults.")
    run: str | None = None
    runSpec: dict[str, Any] | None = None
    stageStatus: StageStatus | None = None


class StageLog(ApiModel):
    stage: str
    source: str = Field(description="pod, mlflow (the saved log artifact) or none")
    text: str
    pod: str | None = None
    mlflowRunId: str | None = None
    note: str | None = None


class ArtifactLink(ApiModel):
    path: str
    size: int | None
    url: str


class StageMlflow(ApiModel):
    runId: str
    link: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    artifacts: list[ArtifactLink]


class StageOutputs(ApiModel):
    stage: str
    state: str
    result: dict[str, Any] = Field(description="The stage's reported result (status.stages entry).")
    mlflow: StageMlflow | None = None
    mlflowError: str | None = None
    shapImage: str | None = None


# --------------------------------------------------------------------------------------------
# MLflow


class MlflowRun(ApiModel):
    runId: str | None
    runName: str | None
    experimentId: str | None
    status: str | None
    startTime: int | None
    endTime: int | None
    artifactUri: str | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


class ArtifactFile(ApiModel):
    path: str
    is_dir: bool | None = None
    file_size: int | None = None


class MlflowRunDetail(MlflowRun):
    artifacts: list[ArtifactFile]
    link: str


class AliasVersion(ApiModel):
    alias: str
    model: str
    version: str
    runId: str | None
    tags: dict[str, str]
    createdAt: int | None
    metrics: dict[str, float]
    link: str
    runLink: str | None = None


class Champion(ApiModel):
    model: str
    champion: AliasVersion | None
    challenger: AliasVersion | None
    mlflowUi: str


# --------------------------------------------------------------------------------------------
# Claims


class Claim(ApiModel):
    claim_id: int
    claim_date: str
    cpt_bucket: str
    provider_type: str
    billed_amount: float
    allowed_amount: float
    diagnosis_group: str
    patient_age: int
    settlement: str | None = Field(default=None, description="The generator's outcome label.")
    approvalProbability: float | None = Field(default=None, description="Live stream: the model's score.")
    decision: str | None = None


class ClaimsSample(ApiModel):
    rows: int
    seed: int
    profile: str
    claims: list[Claim]


class StreamReference(ApiModel):
    seed: int
    window: str
    source: str


class StreamStatus(ApiModel):
    running: bool
    profile: str
    profiles: list[str]
    batchRows: int
    tickSeconds: float
    windowRows: int
    startedBy: str | None
    reference: StreamReference | None
    scoring: str
    servingVersion: str | None


class DriftSummary(ApiModel):
    judged: bool = Field(description="False while the window is too small to judge.")
    referenceRows: int
    windowRows: int
    threshold: float
    psi: dict[str, float] = Field(description="Population stability index per feature.")
    js: dict[str, float] = Field(
        default_factory=dict, description="Jensen-Shannon distance (base 2) per categorical feature."
    )
    maxPsi: float
    driftedFeatures: list[str]
    drifted: bool
    categoricalFeatures: list[str]
    profile: str | None = None
    source: str | None = None


# --------------------------------------------------------------------------------------------
# Failure toggles


class FailureToggle(ApiModel):
    mode: str
    enabled: bool
    effect: str | None = None
    reason: str | None = None
