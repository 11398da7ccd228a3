"""Status conditions of a PipelineRun, following the Kubernetes API conventions.

Conditions are plain dicts shaped like ``metav1.Condition`` (type, status, reason, message,
lastTransitionTime, observedGeneration). The helpers are pure: they return a new list and never
change the one they were given. ``lastTransitionTime`` changes only when ``status`` changes;
reason, message and observedGeneration are updated in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class ConditionType(StrEnum):
    """Condition types of a PipelineRun (`kubectl wait --for=condition=<type>`)."""

    #: The summary (Tekton's convention for bounded runs): Unknown while in progress.
    SUCCEEDED = "Succeeded"
    #: The CI stages passed (True once mlflow-log succeeded).
    CI_PASSED = "CIPassed"
    #: The manual approval gate's outcome.
    APPROVED = "Approved"
    #: The candidate serves in staging (deploy-staging succeeded).
    DEPLOYED = "Deployed"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class RunReason(StrEnum):
    """Condition reasons set by the operator itself.

    Failed stages add the stage result's own reason (``claimops_stages.contract.Reason``, e.g.
    ``CITestsFailed``, ``SchemaValidationFailed``, ``MetricRegression``, ``MLflowUnavailable``),
    or ``ImagePullFailed`` / ``ContainerCannotStart`` when a stage's container cannot start
    (``claimops_operator.pods.StartFailureReason``).
    """

    # Succeeded=Unknown.
    RUNNING = "Running"
    QUEUED = "Queued"  # the next stage Job waits for a free stage slot
    AWAITING_CD = "AwaitingCD"
    AWAITING_APPROVAL = "AwaitingApproval"
    # Succeeded=True.
    SUCCEEDED = "Succeeded"
    DEPLOYED_TO_STAGING = "DeployedToStaging"
    # Succeeded=False (besides the stage result reasons).
    STAGE_TIMEOUT = "StageTimeout"
    JOB_FAILED = "JobFailed"
    POD_LOST = "PodLost"  # the stage's pod was deleted, evicted or killed before it reported
    JOB_DELETED = "JobDeleted"  # the stage's Job was deleted (kubectl delete job) before it finished
    REJECTED = "Rejected"
    APPROVAL_TIMEOUT = "ApprovalTimeout"
    CANCELLED = "Cancelled"
    # Gate and deployment conditions.
    PENDING = "Pending"  # the stage the condition is about has not been reached yet
    PASSED = "Passed"  # CIPassed=True
    APPROVED = "Approved"  # Approved=True
    DEPLOYING = "Deploying"  # Deployed=Unknown while the staging ModelDeployment rolls out
    STAGING_READY = "StagingReady"  # Deployed=True
    NOT_REACHED = "NotReached"  # the run ended before the condition's stage was reached


class DeploymentCondition(StrEnum):
    """Condition types of a ModelDeployment."""

    #: The summary (long-running resource): True while it serves the wanted version.
    READY = "Ready"
    PROGRESSING = "Progressing"
    #: The outcome of the last rollback request: Unknown while the target rolls out.
    ROLLED_BACK = "RolledBack"


class DeploymentReason(StrEnum):
    """Condition reasons of a ModelDeployment (a model server that cannot start adds the
    pod's ``claimops_operator.pods.StartFailureReason``; a refused rollback the Job's reason)."""

    SERVING = "Serving"  # Ready=True
    SCALED_TO_ZERO = "ScaledToZero"
    ROLLING_OUT = "RollingOut"
    ROLLOUT_COMPLETE = "RolloutComplete"
    ROLLOUT_FAILED = "RolloutFailed"
    IN_PROGRESS = "InProgress"  # RolledBack=Unknown while the rollback Job moves the alias
    ROLLING_BACK = "RollingBack"  # RolledBack=Unknown while the target rolls out
    ROLLED_BACK = "RolledBack"
    SUPERSEDED = "Superseded"  # a new version was asked for before the rollback target served
    NO_PREVIOUS_VERSION = "NoPreviousVersion"
    JOB_FAILED = "JobFailed"


#: Conditions as read from a status (``None`` when the status has none yet).
Conditions = Sequence[Mapping[str, Any]] | None

#: Timestamps in status use metav1.Time's format: RFC 3339, UTC, whole seconds.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with whole seconds (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str | None) -> datetime | None:
    """Inverse of :func:`format_time` (also accepts fractional seconds and offsets)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def get_condition(conditions: Conditions, type_: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition
    return None


def condition_status(conditions: Conditions, type_: str) -> str | None:
    condition = get_condition(conditions, type_)
    return None if condition is None else str(condition.get("status"))


def set_condition(
    conditions: Conditions,
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int,
) -> list[dict[str, Any]]:
    """Return a copy of ``conditions`` with ``type_`` set (added at the end when missing)."""
    updated: list[dict[str, Any]] = []
    found = False
    for condition in conditions or ():
        item = dict(condition)
        if item.get("type") == type_:
            found = True
            if item.get("status") != status or not item.get("lastTransitionTime"):
                item["lastTransitionTime"] = format_time(now)
            item.update(status=status, reason=reason, message=message, observedGeneration=generation)
        updated.append(item)
    if not found:
        updated.append(
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": format_time(now),
                "observedGeneration": generation,
            }
        )
    return updated


def initial_conditions(now: datetime, generation: int) -> list[dict[str, Any]]:
    """Every condition a PipelineRun carries, Unknown (set on the first reconcile)."""
    conditions: list[dict[str, Any]] = []
    for type_, reason, message in (
        (ConditionType.SUCCEEDED, RunReason.RUNNING, "The pipeline run started"),
        (ConditionType.CI_PASSED, RunReason.RUNNING, "The CI stages are running"),
        (ConditionType.APPROVED, RunReason.PENDING, "The manual approval gate has not been reached"),
        (ConditionType.DEPLOYED, RunReason.PENDING, "Nothing has been deployed to staging yet"),
    ):
        conditions = set_condition(
            conditions, type_, ConditionStatus.UNKNOWN, reason, message, now=now, generation=generation
        )
    return conditions


_SUMMARY = ConditionType.SUCCEEDED


def mark_running(
    conditions: Conditions, reason: str, message: str, *, now: datetime, generation: int
) -> list[dict[str, Any]]:
    """Succeeded=Unknown: the run is in progress (reason Running, Queued, AwaitingCD, AwaitingApproval)."""
    return set_condition(
        conditions, _SUMMARY, ConditionStatus.UNKNOWN, reason, message, now=now, generation=generation
    )


def mark_succeeded(
    conditions: Conditions,
    message: str,
    *,
    now: datetime,
    generation: int,
    reason: str = RunReason.SUCCEEDED,
) -> list[dict[str, Any]]:
    """Succeeded=True (reason Succeeded, or DeployedToStaging when serving is disabled)."""
    return set_condition(
        conditions, _SUMMARY, ConditionStatus.TRUE, reason, message, now=now, generation=generation
    )


def mark_failed(
    conditions: Conditions, reason: str, message: str, *, now: datetime, generation: int
) -> list[dict[str, Any]]:
    """Succeeded=False with the reason the run ended (a stage reason, Rejected, Cancelled, ...)."""
    return set_condition(
        conditions, _SUMMARY, ConditionStatus.FALSE, reason, message, now=now, generation=generation
    )


def resolve_unknown(
    conditions: Conditions, reason: str, message: str, *, now: datetime, generation: int
) -> list[dict[str, Any]]:
    """Turn every condition still Unknown into False (a finished run leaves nothing Unknown)."""
    updated = [dict(c) for c in conditions or ()]
    for condition in list(updated):
        if condition.get("status") == ConditionStatus.UNKNOWN:
            updated = set_condition(
                updated,
                str(condition["type"]),
                ConditionStatus.FALSE,
                reason,
                message,
                now=now,
                generation=generation,
            )
    return updated


def with_generation(conditions: Conditions, generation: int) -> list[dict[str, Any]]:
    """Copy of ``conditions`` re-stamped with ``generation`` (nothing else changes)."""
    return [{**c, "observedGeneration": generation} for c in conditions or ()]
