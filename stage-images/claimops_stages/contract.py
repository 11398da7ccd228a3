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


@dataclass(frozen=True)
class Stage:
    name: str
    phase: Phase
    kind: StageKind
    title: str
    description: str


#: The seed's twelve stages, in pipeline order. `rollback` is not part of the linear flow:
#: it can be requested at any time and is carried out on the production ModelDeployment.
STAGES: tuple[Stage, ...] = (
    Stage("commit", Phase.CI, StageKind.MARKER, "Commit/PR", "A new commit triggers the pipeline."),
    Stage("ci-tests", Phase.CI, StageKind.JOB, "CI Tests", "Unit tests and lint of the ML code."),
    Stage(
        "data-validation",
        Phase.CI,
        StageKind.JOB,
        "Data Validation",
        "Schema and quality checks of the training data.",
    ),
    Stage("quick-train", Phase.CI, StageKind.JOB, "Quick Train", "Fast training on a sample."),
    Stage("mlflow-log", Phase.CI, StageKind.JOB, "MLflow Log", "Log the CI summary to MLflow."),
    Stage(
        "full-train",
        Phase.CD,
        StageKind.JOB,
        "Full Train",
        "Train on the full dataset and register a version.",
    ),
    Stage(
        "evaluate-vs-champion",
        Phase.CD,
        StageKind.JOB,
        "Evaluate vs Champion",
        "Compare the candidate with the champion on a fresh holdout.",
    ),
    Stage("manual-approval", Phase.CD, StageKind.GATE, "Manual Approval", "A human approves or rejects."),
    Stage(
        "deploy-staging",
        Phase.DEPLOY,
        StageKind.DEPLOYMENT,
        "Deploy Staging",
        "Serve the candidate in staging.",
    ),
    Stage(
        "shadow-monitor",
        Phase.DEPLOY,
        StageKind.JOB,
        "Shadow Monitor",
        "Score the same claims with production and the shadow; measure agreement and drift.",
    ),
    Stage(
        "promote-production",
        Phase.DEPLOY,
        StageKind.JOB,
        "Promote Production",
        "Make the candidate the champion and serve it in production.",
    ),
    Stage("rollback", Phase.DEPLOY, StageKind.JOB, "Rollback", "Return to the previous champion (any time)."),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
STAGES_BY_NAME: Mapping[str, Stage] = {s.name: s for s in STAGES}
#: Stages whose work is a Job running the stage CLI.
JOB_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.kind is StageKind.JOB)


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
    INVALID_INPUT = "InvalidInput"
    INTERNAL_ERROR = "InternalError"


#: The reason each failure injection ends with, as documented in the README.
FAILURE_REASONS: Mapping[FailureMode, Reason] = {
    FailureMode.SCHEMA_VALIDATION: Reason.SCHEMA_VALIDATION_FAILED,
    FailureMode.METRIC_REGRESSION: Reason.METRIC_REGRESSION,
    FailureMode.MLFLOW_CONNECTION: Reason.MLFLOW_UNAVAILABLE,
    FailureMode.TRAINING_ERROR: Reason.CI_TESTS_FAILED,
}


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
    commit_sha: str = "0000000"
    model_name: str = "claim-settlement"
    rows: int = 20000
    seed: int = 42
    window: str = "2026-01-01/2026-03-31"
    drift: str = "none"
    failures: list[str] = field(default_factory=list)
    # Training hyper-parameters.
    n_estimators: int = 200
    max_depth: int = 12
    quick_sample_fraction: float = 0.2
    # Gates.
    min_auc: float = 0.75
    max_auc_drop: float = 0.02
    min_shadow_agreement: float = 0.9
    max_psi: float = 0.2
    # Produced by earlier stages.
    candidate_version: str | None = None
    ci_run_id: str | None = None
    # Deploy stages: where the production and shadow model servers answer.
    production_url: str | None = None
    shadow_url: str | None = None
    requested_by: str | None = None

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


# --------------------------------------------------------------------------------------------
# What each CLI stage reads and reports (the operator builds Jobs from this; the UI shows it)

#: Environment every stage Job reads. Stages reach artifacts through MLflow's proxy
#: (`mlflow server --serve-artifacts`), so no object-store credentials go to stage pods.
STAGE_ENV: Mapping[str, str] = {
    "MLFLOW_TRACKING_URI": "MLflow tracking server URL (required).",
    TERMINATION_MESSAGE_PATH_ENV: f"Where to write the result (default {DEFAULT_TERMINATION_MESSAGE_PATH}).",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "Client retries after the /health probe (default 2).",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "Seconds per MLflow request (default 60).",
}

_COMMON_INPUTS = ("run", "commit_sha", "model_name", "window", "seed", "failures")
#: The StageInputs fields each CLI stage uses (every stage accepts all of them).
STAGE_ARGUMENTS: Mapping[str, tuple[str, ...]] = {
    "ci-tests": _COMMON_INPUTS,
    "data-validation": (*_COMMON_INPUTS, "rows"),
    "quick-train": (*_COMMON_INPUTS, "rows", "quick_sample_fraction", "n_estimators", "max_depth"),
    "mlflow-log": (*_COMMON_INPUTS, "rows", "n_estimators", "max_depth"),
    "full-train": (*_COMMON_INPUTS, "rows", "n_estimators", "max_depth", "ci_run_id"),
    "evaluate-vs-champion": (*_COMMON_INPUTS, "rows", "candidate_version", "min_auc", "max_auc_drop"),
    "shadow-monitor": (
        *_COMMON_INPUTS,
        "rows",
        "drift",
        "candidate_version",
        "production_url",
        "shadow_url",
        "min_shadow_agreement",
        "max_psi",
    ),
    "promote-production": (*_COMMON_INPUTS, "candidate_version", "requested_by"),
    "rollback": (*_COMMON_INPUTS, "requested_by"),
}
#: The CLI's stages: `python -m claimops_stages <one of these>`.
CLI_STAGES: tuple[str, ...] = tuple(STAGE_ARGUMENTS)

#: `metrics` keys each stage reports on success (besides `stage_seconds`, which all report).
RESULT_METRICS: Mapping[str, tuple[str, ...]] = {
    "ci-tests": ("tests", "tests_failed", "lint_errors"),
    "data-validation": ("rows", "checks", "checks_failed", "approved_share"),
    "quick-train": ("accuracy", "f1", "auc_roc", "precision", "recall"),
    "mlflow-log": ("ci_accuracy", "ci_f1", "ci_auc_roc", "ci_precision", "ci_recall"),
    "full-train": ("accuracy", "f1", "auc_roc", "precision", "recall"),
    # champion_auc and the delta keys only when a champion exists.
    "evaluate-vs-champion": (
        "candidate_auc",
        "champion_auc",
        "auc_delta",
        "auc_delta_ci_low",
        "auc_delta_ci_high",
    ),
    # agreement, the difference and production's figures only when a production exists.
    "shadow-monitor": (
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
    "promote-production": (),
    "rollback": (),
}
#: `outputs` keys each stage reports on success (all add `experiment_id`).
RESULT_OUTPUTS: Mapping[str, tuple[str, ...]] = {
    "ci-tests": (),
    "data-validation": (),
    "quick-train": ("model_uri",),
    "mlflow-log": (),
    "full-train": ("model_uri",),  # and model_version: the registered version
    "evaluate-vs-champion": ("candidate_version", "champion_version"),
    "shadow-monitor": ("drifted_features", "shadow_version", "reference_version", "production_version"),
    "promote-production": ("champion_version", "previous_champion_version"),
    "rollback": ("champion_version", "rolled_back_from_version"),
}


def result_json_schema() -> dict[str, Any]:
    """JSON Schema of the termination message (for the UI and for validating results)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ClaimOps stage result",
        "type": "object",
        "required": ["stage", "status", "reason"],
        "properties": {
            "stage": {"type": "string", "enum": list(STAGE_NAMES)},
            "status": {"type": "string", "enum": [s.value for s in ResultStatus]},
            "reason": {"type": "string", "description": "CamelCase; one of Reason"},
            "message": {"type": "string"},
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "mlflow_run_id": {"type": ["string", "null"]},
            "model_version": {"type": ["string", "null"]},
            "outputs": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }


def stage_source(stage: str) -> str:
    """The source of the function a CLI stage runs (the UI's "the step's code").

    Read from `stages.py` with `ast`, so the UI shows it without importing the ML stack.
    """
    import ast
    from pathlib import Path

    if stage not in STAGE_ARGUMENTS:
        raise KeyError(f"{stage!r} is not a CLI stage")
    path = Path(__file__).with_name("stages.py")
    text = path.read_text(encoding="utf-8")
    name = stage.replace("-", "_")
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(text, node) or ""
    raise KeyError(f"no function {name} in {path}")
