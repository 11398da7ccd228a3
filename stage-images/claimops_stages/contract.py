"""The stage contract: stage names, what each stage takes, and the result it reports.

This is the one source of truth shared by the stage CLI (which runs in Jobs), the operator
(which starts the Jobs and reads the results) and the UI (which draws the DAG). It must only
import the standard library.

A stage reports a small JSON :class:`StageResult` in its container's termination message
(Kubernetes keeps at most 4096 bytes of it); everything larger goes to MLflow.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

#: Kubernetes truncates termination messages at 4096 bytes; stay well inside.
MAX_RESULT_BYTES = 4000
#: Where the kubelet reads the termination message; the node stand-in used in tests
#: redirects it through the environment variable below.
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_PATH_ENV = "CLAIMOPS_TERMINATION_MESSAGE_PATH"


class Phase(StrEnum):
    """The seed's three groups of stages."""

    CI = "CI"
    CD = "CD"
    DEPLOY = "Deploy"


class StageKind(StrEnum):
    """How the operator carries a stage out."""

    JOB = "Job"  # a batch/v1 Job running `python -m claimops_stages <name>`
    GATE = "Gate"  # waits for a field in the PipelineRun's spec; no Job
    DEPLOYMENT = "Deployment"  # creates/patches a ModelDeployment and waits for Ready
    MARKER = "Marker"  # records a fact (the commit); no Job


class Gate(StrEnum):
    """A field of the PipelineRun's spec a stage waits for before it starts or decides."""

    CONTINUE_TO_CD = "ContinueToCD"  # spec.continueToCD / spec.autoContinueToCD, then the Job
    APPROVAL = "Approval"  # spec.approval.decision (a Gate stage: the decision is the stage)


class Record(StrEnum):
    """Where the operator copies a stage's result, besides the stage's own status entry."""

    NONE = "None"
    CI_SUMMARY = "CISummary"  # status.mlflow.ciRunId; later stages get it as --ci-run-id
    CANDIDATE = "Candidate"  # status.mlflow.modelVersion: the version the later stages serve
    EVALUATION = "Evaluation"  # status.evaluation
    SHADOW = "Shadow"  # status.shadow


class FailureMode(StrEnum):
    """The seed's failure-mode toggles."""

    SCHEMA_VALIDATION = "SchemaValidation"  # data-validation fails on a missing column
    METRIC_REGRESSION = "MetricRegression"  # the candidate is worse than the champion
    MLFLOW_CONNECTION = "MLflowConnection"  # stages cannot reach MLflow
    TRAINING_ERROR = "TrainingError"  # ci-tests fail


class ResultStatus(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Reason(StrEnum):
    """CamelCase reasons a stage reports; the operator copies them into conditions."""

    PASSED = "Passed"
    NO_CHAMPION = "NoChampion"
    NO_PRODUCTION = "NoProduction"
    CI_TESTS_FAILED = "CITestsFailed"
    SCHEMA_VALIDATION_FAILED = "SchemaValidationFailed"
    DATA_QUALITY_FAILED = "DataQualityFailed"
    TRAINING_FAILED = "TrainingFailed"
    METRIC_REGRESSION = "MetricRegression"
    BELOW_MIN_AUC = "BelowMinAUC"
    MLFLOW_UNAVAILABLE = "MLflowUnavailable"
    SHADOW_DISAGREEMENT = "ShadowDisagreement"
    DRIFT_DETECTED = "DriftDetected"
    NO_PREVIOUS_CHAMPION = "NoPreviousChampion"
    #: The release record could not be stored or tagged: the champion did not move.
    RELEASE_RECORD_FAILED = "ReleaseRecordFailed"
    INVALID_INPUT = "InvalidInput"
    INTERNAL_ERROR = "InternalError"


#: The reason each failure injection ends with, as documented in the README.
FAILURE_REASONS: Mapping[FailureMode, Reason] = {
    FailureMode.SCHEMA_VALIDATION: Reason.SCHEMA_VALIDATION_FAILED,
    FailureMode.METRIC_REGRESSION: Reason.METRIC_REGRESSION,
    FailureMode.MLFLOW_CONNECTION: Reason.MLFLOW_UNAVAILABLE,
    FailureMode.TRAINING_ERROR: Reason.CI_TESTS_FAILED,
}

#: Failures no stage's retry can fix: the stage's input is wrong and stays wrong.
ALWAYS_NON_RETRYABLE: frozenset[str] = frozenset({Reason.INVALID_INPUT})

#: Where a stage's code lives (the UI shows it; read with `ast`, never imported there).
STAGE_MODULE = "claimops_stages.stages"
OPERATOR_MODULE = "claimops_operator.pipeline"


@dataclass(frozen=True)
class Stage:
    """Everything about one stage: what it is, what its CLI takes and reports, and the
    operator's rule for it. Adding a stage is adding one of these to :data:`STAGES` (and, for a
    Job stage, its function in `stages.py`)."""

    name: str
    phase: Phase
    kind: StageKind
    title: str
    description: str
    #: Job stages: the StageInputs fields it uses (every stage accepts all of them).
    arguments: tuple[str, ...] = ()
    #: `metrics` keys it reports on success (besides `stage_seconds`, which all report).
    metrics: tuple[str, ...] = ()
    #: `outputs` keys it reports on success (Job stages all add `experiment_id`).
    outputs: tuple[str, ...] = ()
    #: False: not one of a PipelineRun's stages, but an operation requested on its own.
    in_run: bool = True
    gate: Gate | None = None
    #: A Job stage starts only once the candidate serves in this role.
    serve_before: str | None = None
    #: The stage is done only once the candidate serves in this role (after its Job, if any).
    serve_after: str | None = None
    #: The stage needs model servers for shadow traffic or promotion (operator's serving switch).
    needs_serving: bool = False
    record: Record = Record.NONE
    #: The gate condition (a ConditionType of the operator) its failure sets False; the last
    #: stage of a run owning it sets it True when it passes.
    condition: str | None = None
    #: Reported failures a retry cannot fix (besides ALWAYS_NON_RETRYABLE).
    non_retryable: frozenset[str] = frozenset()
    #: The reason reported when the stage function raises unexpectedly.
    crash_reason: str = Reason.INTERNAL_ERROR

    @property
    def cli(self) -> bool:
        """Run by the stage CLI (`python -m claimops_stages <name>`)."""
        return self.kind is StageKind.JOB

    @property
    def function(self) -> str:
        """The name of the function that carries the stage out: in STAGE_MODULE for a Job
        stage, else the operator's handler for its kind in OPERATOR_MODULE."""
        if self.cli:
            return self.name.replace("-", "_")
        return f"_handle_{self.kind.value.lower()}"

    @property
    def module(self) -> str:
        return STAGE_MODULE if self.cli else OPERATOR_MODULE

    def retryable(self, reason: str) -> bool:
        return reason not in ALWAYS_NON_RETRYABLE and reason not in self.non_retryable


_COMMON_INPUTS = ("run", "commit_sha", "model_name", "window", "seed", "failures")
_TRAINING_METRICS = ("accuracy", "f1", "auc_roc", "precision", "recall")
_CI = "CIPassed"
_DEPLOYED = "Deployed"

#: The seed's twelve stages, in pipeline order. `rollback` is not part of the linear flow:
#: it can be requested at any time and is carried out on the production ModelDeployment.
STAGES: tuple[Stage, ...] = (
    Stage(
        "commit",
        Phase.CI,
        StageKind.MARKER,
        "Commit/PR",
        "A new commit triggers the pipeline.",
        outputs=("sha", "author", "message"),
        condition=_CI,
    ),
    Stage(
        "ci-tests",
        Phase.CI,
        StageKind.JOB,
        "CI Tests",
        "Unit tests and lint of the ML code.",
        arguments=_COMMON_INPUTS,
        metrics=("tests", "tests_failed", "lint_errors"),
        condition=_CI,
        non_retryable=frozenset({Reason.CI_TESTS_FAILED}),
    ),
    Stage(
        "data-validation",
        Phase.CI,
        StageKind.JOB,
        "Data Validation",
        "Schema and quality checks of the training data.",
        arguments=(*_COMMON_INPUTS, "rows"),
        metrics=("rows", "checks", "checks_failed", "approved_share"),
        condition=_CI,
        non_retryable=frozenset({Reason.SCHEMA_VALIDATION_FAILED, Reason.DATA_QUALITY_FAILED}),
    ),
    Stage(
        "quick-train",
        Phase.CI,
        StageKind.JOB,
        "Quick Train",
        "Fast training on a sample.",
        arguments=(*_COMMON_INPUTS, "rows", "quick_sample_fraction", "n_estimators", "max_depth"),
        metrics=_TRAINING_METRICS,
        outputs=("model_uri",),
        condition=_CI,
        crash_reason=Reason.TRAINING_FAILED,
    ),
    Stage(
        "mlflow-log",
        Phase.CI,
        StageKind.JOB,
        "MLflow Log",
        "Log the CI summary to MLflow.",
        arguments=(*_COMMON_INPUTS, "rows", "n_estimators", "max_depth"),
        metrics=tuple(f"ci_{m}" for m in _TRAINING_METRICS),
        record=Record.CI_SUMMARY,
        condition=_CI,
        non_retryable=frozenset({Reason.CI_TESTS_FAILED}),
    ),
    Stage(
        "full-train",
        Phase.CD,
        StageKind.JOB,
        "Full Train",
        "Train on the full dataset and register a version.",
        arguments=(*_COMMON_INPUTS, "rows", "n_estimators", "max_depth", "ci_run_id"),
        metrics=_TRAINING_METRICS,
        outputs=("model_uri",),  # and model_version: the registered version
        gate=Gate.CONTINUE_TO_CD,
        record=Record.CANDIDATE,
        crash_reason=Reason.TRAINING_FAILED,
    ),
    Stage(
        "evaluate-vs-champion",
        Phase.CD,
        StageKind.JOB,
        "Evaluate vs Champion",
        "Compare the candidate with the champion on a fresh holdout.",
        arguments=(*_COMMON_INPUTS, "rows", "candidate_version", "min_auc", "max_auc_drop"),
        # champion_auc and the delta keys only when a champion exists.
        metrics=("candidate_auc", "champion_auc", "auc_delta", "auc_delta_ci_low", "auc_delta_ci_high"),
        outputs=("candidate_version", "champion_version"),
        record=Record.EVALUATION,
        non_retryable=frozenset({Reason.METRIC_REGRESSION, Reason.BELOW_MIN_AUC}),
    ),
    Stage(
        "manual-approval",
        Phase.CD,
        StageKind.GATE,
        "Manual Approval",
        "A human approves or rejects.",
        gate=Gate.APPROVAL,
        condition="Approved",
    ),
    Stage(
        "deploy-staging",
        Phase.DEPLOY,
        StageKind.DEPLOYMENT,
        "Deploy Staging",
        "Serve the candidate in staging.",
        outputs=("role", "version", "url"),
        serve_after="staging",
        condition=_DEPLOYED,
    ),
    Stage(
        "shadow-monitor",
        Phase.DEPLOY,
        StageKind.JOB,
        "Shadow Monitor",
        "Score the same claims with production and the shadow; measure agreement and drift.",
        arguments=(
            *_COMMON_INPUTS,
            "rows",
            "drift",
            "candidate_version",
            "production_url",
            "shadow_url",
            "min_shadow_agreement",
            "max_psi",
        ),
        # agreement, the difference and production's figures only when a production exists.
        metrics=(
            "claims",
            "shadow_p50_ms",
            "shadow_p99_ms",
            "shadow_errors",
            "max_psi",
            "agreement",
            "mean_abs_probability_diff",
            "production_p50_ms",
            "production_p99_ms",
            "production_errors",
        ),
        outputs=("drifted_features", "shadow_version", "reference_version", "production_version"),
        serve_before="shadow",
        needs_serving=True,
        record=Record.SHADOW,
        non_retryable=frozenset({Reason.SHADOW_DISAGREEMENT, Reason.DRIFT_DETECTED}),
    ),
    Stage(
        "promote-production",
        Phase.DEPLOY,
        StageKind.JOB,
        "Promote Production",
        "Make the candidate the champion and serve it in production.",
        arguments=(*_COMMON_INPUTS, "candidate_version", "requested_by", "release_context"),
        # release_*: the in-toto release record (see claimops_stages.release).
        outputs=("champion_version", "previous_champion_version", "release_digest", "release_uri"),
        serve_after="production",
        needs_serving=True,
    ),
    Stage(
        "rollback",
        Phase.DEPLOY,
        StageKind.JOB,
        "Rollback",
        "Return to the previous champion (any time).",
        arguments=(*_COMMON_INPUTS, "requested_by", "reason"),
        outputs=("champion_version", "rolled_back_from_version"),
        in_run=False,
        non_retryable=frozenset({Reason.NO_PREVIOUS_CHAMPION}),
    ),
)


# Views of the table. Functions, not constants, so that whoever reads them sees STAGES as it
# is now (a test can add a row to it and every consumer follows).
def stage(name: str) -> Stage:
    """The stage called `name`; KeyError when there is none."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(name)


def stage_names() -> tuple[str, ...]:
    return tuple(s.name for s in STAGES)


def run_stages() -> tuple[Stage, ...]:
    """A PipelineRun's stages, in order."""
    return tuple(s for s in STAGES if s.in_run)


def cli_stages() -> tuple[Stage, ...]:
    """The stages `python -m claimops_stages <name>` runs."""
    return tuple(s for s in STAGES if s.cli)


def phase_stages(phase: Phase) -> tuple[Stage, ...]:
    """A PipelineRun's stages of one phase, in order."""
    return tuple(s for s in run_stages() if s.phase is phase)


def recording(record: Record) -> Stage | None:
    """The run stage whose result goes to `record` (at most one per record)."""
    return next((s for s in run_stages() if s.record is record), None)


# --------------------------------------------------------------------------------------------
# PipelineRun spec defaults: the one Python source; the CRD in crds/ must say the same
# (a unit test compares them).

#: spec path (dotted, as in the CRD) -> the CRD's `default:`.
SPEC_DEFAULTS: Mapping[str, Any] = {
    "model.name": "claim-settlement",
    "dataset.rows": 20000,
    "dataset.seed": 42,
    "dataset.drift": "none",
    "training.nEstimators": 200,
    "training.maxDepth": 12,
    "training.quickSampleFraction": 0.2,
    "gates.minAuc": 0.75,
    "gates.maxAucDrop": 0.02,
    "gates.minShadowAgreement": 0.9,
    "gates.maxPsi": 0.2,
    "continueToCD": False,
    "autoContinueToCD": False,
    "approval.decision": "Pending",
    "timeouts.stageSeconds": 1800,
    "timeouts.approvalSeconds": 86400,
    "retries": 1,
    "cancel": False,
}
#: Values a stage run outside a PipelineRun falls back to where the CRD has no default
#: (spec.commit.sha is required there; spec.dataset.window is optional).
LOCAL_COMMIT_SHA = "0000000"
LOCAL_WINDOW = "2026-01-01/2026-03-31"


@dataclass
class StageResult:
    """What a stage reports in its termination message."""

    stage: str
    status: ResultStatus
    reason: str
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    model_version: str | None = None
    #: Small string outputs the next stages or the UI need (e.g. experiment id, alias).
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status is ResultStatus.SUCCEEDED

    def to_json(self) -> str:
        """Serialise, shortening the message and outputs until it fits in the limit."""
        data = asdict(self)
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        while len(text.encode()) > MAX_RESULT_BYTES:
            if len(data["message"]) > 200:
                data["message"] = data["message"][: len(data["message"]) // 2] + "…"
            elif data["outputs"]:
                data["outputs"].pop(sorted(data["outputs"])[-1])
            elif data["metrics"]:
                data["metrics"].pop(sorted(data["metrics"])[-1])
            else:
                data["message"] = data["message"][:100]
                break
            text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        return text

    @classmethod
    def from_json(cls, text: str) -> StageResult:
        """Parse a termination message; raises ValueError when it is not a stage result."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"termination message is not JSON: {exc}") from exc
        if not isinstance(data, dict) or "stage" not in data or "status" not in data:
            raise ValueError("termination message is not a stage result (needs 'stage' and 'status')")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["status"] = ResultStatus(kwargs["status"])
        kwargs["metrics"] = {str(k): float(v) for k, v in (kwargs.get("metrics") or {}).items()}
        kwargs["outputs"] = {str(k): str(v) for k, v in (kwargs.get("outputs") or {}).items()}
        return cls(**kwargs)

    def write(self, path: str | None = None) -> None:
        """Write to the termination-message path (redirectable for the node stand-in)."""
        target = path or os.environ.get(TERMINATION_MESSAGE_PATH_ENV) or DEFAULT_TERMINATION_MESSAGE_PATH
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(self.to_json())


@dataclass
class StageInputs:
    """Everything a stage Job is told, as CLI arguments (the operator builds these from the
    PipelineRun's spec and earlier stage results; the stage CLI parses them back)."""

    run: str = "local"
    commit_sha: str = LOCAL_COMMIT_SHA
    model_name: str = SPEC_DEFAULTS["model.name"]
    rows: int = SPEC_DEFAULTS["dataset.rows"]
    seed: int = SPEC_DEFAULTS["dataset.seed"]
    window: str = LOCAL_WINDOW
    drift: str = SPEC_DEFAULTS["dataset.drift"]
    failures: list[str] = field(default_factory=list)
    # Training hyper-parameters.
    n_estimators: int = SPEC_DEFAULTS["training.nEstimators"]
    max_depth: int = SPEC_DEFAULTS["training.maxDepth"]
    quick_sample_fraction: float = SPEC_DEFAULTS["training.quickSampleFraction"]
    # Gates.
    min_auc: float = SPEC_DEFAULTS["gates.minAuc"]
    max_auc_drop: float = SPEC_DEFAULTS["gates.maxAucDrop"]
    min_shadow_agreement: float = SPEC_DEFAULTS["gates.minShadowAgreement"]
    max_psi: float = SPEC_DEFAULTS["gates.maxPsi"]
    # Produced by earlier stages.
    candidate_version: str | None = None
    ci_run_id: str | None = None
    # Deploy stages: where the production and shadow model servers answer.
    production_url: str | None = None
    shadow_url: str | None = None
    requested_by: str | None = None
    # rollback: why (recorded on the version restored).
    reason: str | None = None
    # promote-production: the JSON release context (shape in claimops_stages.release).
    release_context: str | None = None

    def to_args(self) -> list[str]:
        """Render as `--flag value` arguments, in field order, omitting unset values."""
        args: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if value is None:
                continue
            if isinstance(value, list):
                for item in value:
                    args += [flag.removesuffix("s"), str(item)]
            else:
                args += [flag, str(value)]
        return args

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        defaults = cls()
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            default = getattr(defaults, f.name)
            if isinstance(default, list):
                parser.add_argument(
                    flag.removesuffix("s"),
                    dest=f.name,
                    action="append",
                    default=[],
                    choices=[m.value for m in FailureMode],
                )
            else:
                kind = type(default) if default is not None else str
                parser.add_argument(flag, dest=f.name, type=kind, default=default)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> StageInputs:
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})

    @classmethod
    def parse(cls, argv: Sequence[str]) -> StageInputs:
        parser = argparse.ArgumentParser(add_help=False)
        cls.add_arguments(parser)
        return cls.from_namespace(parser.parse_args(list(argv)))


def stage_summary() -> list[dict[str, Any]]:
    """Stage definitions as plain data (for the UI's `/steps`)."""
    return [
        {
            "name": s.name,
            "phase": s.phase.value,
            "kind": s.kind.value,
            "title": s.title,
            "description": s.description,
        }
        for s in STAGES
    ]


def result_json_schema() -> dict[str, Any]:
    """JSON Schema of the termination message (for the UI and for validating results)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ClaimOps stage result",
        "type": "object",
        "required": ["stage", "status", "reason"],
        "properties": {
            "stage": {"type": "string", "enum": list(stage_names())},
            "status": {"type": "string", "enum": [s.value for s in ResultStatus]},
            "reason": {"type": "string", "description": "CamelCase; one of Reason"},
            "message": {"type": "string"},
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "mlflow_run_id": {"type": ["string", "null"]},
            "model_version": {"type": ["string", "null"]},
            "outputs": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }


def stage_source(name: str) -> str:
    """The source of the function a CLI stage runs (the UI's "the step's code").

    Read from `stages.py` with `ast`, so the UI shows it without importing the ML stack.
    """
    import ast
    from pathlib import Path

    found = stage(name)
    if not found.cli:
        raise KeyError(f"{name!r} is not a CLI stage")
    path = Path(__file__).with_name("stages.py")
    text = path.read_text(encoding="utf-8")
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == found.function:
            return ast.get_source_segment(text, node) or ""
    raise KeyError(f"no function {found.function} in {path}")
