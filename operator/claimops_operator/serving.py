"""The pure decisions of the ModelDeployment controller.

A ModelDeployment asks for one registered model version (or alias) to be served in a role
(staging, shadow, production). :func:`decide_serving` turns its spec and status, the observed
Deployment rollout and the observed rollback Job into the new status and the actions that get
there, like :func:`claimops_operator.pipeline.decide` does for PipelineRuns.

Rollback (`spec.rollback.requestId` set to a new value) returns the deployment to an earlier
version. For `production` the MLflow `champion` alias moves too, and the registry decides the
target (the previous champion, from its history tags): a `rollback` stage Job does that, and the
controller serves the version the Job reports. Other roles roll back to `spec.rollback.toVersion`
or the version served before the current one. While `spec.model` still names the version that
was rolled back from, the rollback target keeps being served; a new version in `spec.model`
(the next promotion) ends that.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from claimops_stages.api_names import RELEASE, REQUESTED_BY_RUN
from claimops_stages.contract import StageInputs
from claimops_stages.serving import protocols

from .conditions import (
    ConditionStatus,
    DeploymentCondition,
    DeploymentReason,
    format_time,
    set_condition,
)
from .pipeline import EmitEvent, ObservedJob
from .pods import ContainerWaiting, start_failure

#: Roles whose rollback also moves the MLflow `champion` alias (through a Job).
ALIAS_ROLES = frozenset({"production"})
MAX_HISTORY = 100

_TRUE, _FALSE, _UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
_READY, _PROGRESSING = DeploymentCondition.READY, DeploymentCondition.PROGRESSING
_ROLLED_BACK = DeploymentCondition.ROLLED_BACK


class ServingEventReason(StrEnum):
    """Reasons of the Events :func:`decide_serving` asks for (a model server that cannot
    start adds its start-failure reason, as a Warning)."""

    SERVING = "Serving"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_STARTED = "RollbackStarted"
    ROLLBACK_FAILED = "RollbackFailed"  # Warning


@dataclass(frozen=True)
class ObservedRollout:
    """The model server's Deployment as the controller saw it."""

    generation: int
    observed_generation: int
    replicas: int
    ready_replicas: int
    updated_replicas: int
    available_replicas: int
    #: The `claimops.io/spec-hash` annotation: which desired state it was applied from.
    spec_hash: str
    #: A Progressing=False condition (e.g. ProgressDeadlineExceeded), if any.
    failure: str | None = None


@dataclass(frozen=True)
class Target:
    """What the model server should serve."""

    version: str | None
    alias: str | None
    #: Changes when a rollback of an alias must restart the pods (the alias moved in MLflow).
    restart_token: str = ""

    def describe(self) -> str:
        return f"version {self.version}" if self.version else f"alias {self.alias}"


@dataclass(frozen=True)
class ApplyServer:
    """Create or update the model server's Deployment and Service for `target`."""

    target: Target
    spec_hash: str


@dataclass(frozen=True)
class CreateRollbackJob:
    job_name: str
    inputs: StageInputs


ServingAction = ApplyServer | CreateRollbackJob | EmitEvent
#: How the decision sets a condition: (type, status, reason, message).
SetCondition = Callable[[DeploymentCondition, ConditionStatus, str, str], None]


@dataclass
class ServingDecision:
    status: dict[str, Any]
    actions: list[ServingAction] = field(default_factory=list)


def rollback_job_name(mdep_name: str, request_id: str) -> str:
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:8]
    return f"{mdep_name[:40]}-rollback-{digest}"


def desired_hash(spec: Mapping[str, Any], target: Target, image: str) -> str:
    """A digest of everything the Deployment is rendered from: re-apply only when it changes."""
    material = {
        "target": [target.version, target.alias, target.restart_token],
        "replicas": spec.get("replicas", 1),
        "resources": spec.get("resources"),
        "abTest": spec.get("abTest"),
        "image": spec.get("image") or image,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def _spec_target(spec: Mapping[str, Any]) -> Target:
    model = spec.get("model") or {}
    return Target(version=model.get("version"), alias=None if model.get("version") else model.get("alias"))


def _previous_version(history: list[dict[str, Any]], current: str | None) -> str | None:
    for entry in reversed(history):
        if entry.get("version") and entry.get("version") != current:
            return str(entry["version"])
    return None


def decide_serving(
    mdep: Mapping[str, Any],
    rollout: ObservedRollout | None,
    rollback_job: ObservedJob | None,
    now: datetime,
    image: str,
    waiting: ContainerWaiting | None = None,
) -> ServingDecision:
    """`waiting`: a waiting container of the model server's pods
    (:func:`claimops_operator.pods.first_waiting`), when the rollout has not settled."""
    meta, spec = mdep["metadata"], mdep.get("spec") or {}
    status: dict[str, Any] = copy.deepcopy(dict(mdep.get("status") or {}))
    generation = int(meta.get("generation", 1))
    actions: list[ServingAction] = []
    history: list[dict[str, Any]] = status.setdefault("history", [])
    serving = status.get("servingVersion")

    def condition(type_: DeploymentCondition, value: ConditionStatus, reason: str, message: str) -> None:
        # Plain str in the status (it is written as JSON), whatever enum the caller passed.
        status["conditions"] = set_condition(
            status.get("conditions"),
            type_.value,
            value.value,
            str(reason),
            message,
            now=now,
            generation=generation,
        )

    # 1. Which version should run: the spec's, a rollback's, or the one a rollback left in place.
    target = _spec_target(spec)
    rolled_back_to = status.get("rolledBackTo")
    if rolled_back_to and target.version == status.get("rolledBackFrom"):
        target = Target(version=str(rolled_back_to), alias=None)  # spec still names the old version
    elif rolled_back_to and target.version is not None:
        # A new version was asked for (the next promotion): the rollback is over.
        status.pop("rolledBackTo", None)
        status.pop("rolledBackFrom", None)
        if _reason(status, _ROLLED_BACK) == DeploymentReason.ROLLING_BACK:
            message = f"version {target.version} was asked for first"
            condition(_ROLLED_BACK, _FALSE, DeploymentReason.SUPERSEDED, message)

    request = (spec.get("rollback") or {}).get("requestId")
    if request and request != status.get("observedRollbackRequestId"):
        outcome = _rollback(mdep, status, rollback_job, serving, history, actions, condition)
        if outcome is WAIT:  # the rollback Job runs
            return _finish(status, generation, actions)
        if isinstance(outcome, Target):
            target = outcome

    # 2. Apply the Deployment when what it is rendered from changed.
    wanted = desired_hash(spec, target, image)
    if rollout is None or rollout.spec_hash != wanted:
        actions.append(ApplyServer(target, wanted))
    status["url"] = f"http://{meta['name']}.{meta['namespace']}.svc:8080"
    status["protocols"] = protocols.described(str((spec.get("model") or {}).get("name") or ""))
    status["servingAlias"] = target.alias
    if not status["servingAlias"]:
        status.pop("servingAlias")

    # 3. Mirror the rollout.
    settled = (
        rollout is not None
        and rollout.spec_hash == wanted
        and rollout.observed_generation >= rollout.generation
        and rollout.updated_replicas >= rollout.replicas
        and rollout.available_replicas >= rollout.replicas
    )
    status["replicas"] = rollout.replicas if rollout else 0
    status["readyReplicas"] = rollout.ready_replicas if rollout else 0
    wanted_replicas = int(spec.get("replicas", 1))
    if settled and wanted_replicas > 0:
        version = target.version or status.get("rolledBackTo") or serving
        if version and version != serving:
            reason = "Rollback" if version == status.get("rolledBackTo") else "Rollout"
            _record_served(history, str(version), mdep, now, reason=reason)
            status["servingVersion"] = str(version)
            actions.append(_event(ServingEventReason.SERVING, f"Serving {target.describe()}"))
        message = f"{wanted_replicas} replica(s) serving {target.describe()}"
        condition(_READY, _TRUE, DeploymentReason.SERVING, message)
        condition(_PROGRESSING, _FALSE, DeploymentReason.ROLLOUT_COMPLETE, "The model server is up to date")
    elif settled:
        condition(_READY, _FALSE, DeploymentReason.SCALED_TO_ZERO, "spec.replicas is 0")
        condition(_PROGRESSING, _FALSE, DeploymentReason.ROLLOUT_COMPLETE, "Scaled to zero")
    elif rollout is not None and (stuck := _stuck(waiting, spec.get("image") or image)) is not None:
        reason, message = stuck
        if _reason(status, _READY) != reason:  # one Event when it gets stuck, not one per reconcile
            actions.append(_event(reason, message, warning=True))
        condition(_READY, _FALSE, reason, message)
        condition(_PROGRESSING, _FALSE, reason, message)
    elif rollout is not None and rollout.failure:
        condition(_READY, _FALSE, DeploymentReason.ROLLOUT_FAILED, rollout.failure)
        condition(_PROGRESSING, _FALSE, DeploymentReason.ROLLOUT_FAILED, rollout.failure)
    else:
        ready = rollout.ready_replicas if rollout else 0
        message = f"Rolling out {target.describe()}: {ready}/{wanted_replicas} replica(s) ready"
        condition(_READY, _FALSE, DeploymentReason.ROLLING_OUT, message)
        condition(_PROGRESSING, _TRUE, DeploymentReason.ROLLING_OUT, message)
    if settled and _reason(status, _ROLLED_BACK) == DeploymentReason.ROLLING_BACK:
        origin = status.get("rolledBackFrom") or "unknown"
        message = f"Rolled back from version {origin} to version {status.get('rolledBackTo')}"
        condition(_ROLLED_BACK, _TRUE, DeploymentReason.ROLLED_BACK, message)
        actions.append(_event(ServingEventReason.ROLLED_BACK, message))
    return _finish(status, generation, actions)


def _stuck(waiting: ContainerWaiting | None, image: str) -> tuple[str, str] | None:
    """(reason, message) when a model server pod of the current image can never start."""
    # A pod of another image is left over from an earlier rollout that is being replaced.
    if waiting is None or waiting.image != image:
        return None
    failure = start_failure(waiting)
    return None if failure is None else (str(failure[0]), failure[1])


def _event(reason: str, message: str, *, warning: bool = False) -> EmitEvent:
    return EmitEvent("Warning" if warning else "Normal", str(reason), message)


def _reason(status: Mapping[str, Any], type_: str) -> str | None:
    found = next((c for c in status.get("conditions") or () if c.get("type") == type_), None)
    return None if found is None else str(found.get("reason"))


def _finish(status: dict[str, Any], generation: int, actions: list[ServingAction]) -> ServingDecision:
    status["observedGeneration"] = generation
    del status["history"][:-MAX_HISTORY]
    return ServingDecision(status, actions)


def _record_served(
    history: list[dict[str, Any]], version: str, mdep: Mapping[str, Any], now: datetime, reason: str
) -> None:
    stamp = format_time(now)
    if history and "servedUntil" not in history[-1]:
        history[-1]["servedUntil"] = stamp
    entry: dict[str, Any] = {"version": version, "servedFrom": stamp, "reason": reason}
    annotations = mdep["metadata"].get("annotations") or {}
    run = annotations.get(REQUESTED_BY_RUN)
    if run and reason == "Rollout":
        entry["pipelineRun"] = run
        entry.update(_release(annotations.get(RELEASE), run))
    if reason == "Rollback":
        rollback = mdep["spec"].get("rollback") or {}
        who = (rollback.get("requestedBy") or {}).get("username")
        entry.update({k: str(v) for k, v in (("requestedBy", who), ("comment", rollback.get("reason"))) if v})
    history.append(entry)


def _release(annotation: str | None, run: str) -> dict[str, Any]:
    """The promotion summary the operator put on the ModelDeployment, when it is this run's."""
    try:
        release = json.loads(annotation or "{}")
    except ValueError:
        return {}
    if not isinstance(release, dict) or release.get("pipelineRun") != run:
        return {}
    keys = ("submitter", "approvedBy", "releaseDigest", "releaseUri")
    return {k: release[k] for k in keys if release.get(k)}


class _Wait(Enum):
    WAIT = "wait"


#: What :func:`_rollback` returns while the rollback Job runs.
WAIT = _Wait.WAIT


def _rollback(
    mdep: Mapping[str, Any],
    status: dict[str, Any],
    job: ObservedJob | None,
    serving: str | None,
    history: list[dict[str, Any]],
    actions: list[ServingAction],
    condition: SetCondition,
) -> Target | _Wait | None:
    """Carry a rollback request on: the new target, WAIT while its Job runs, or None when it
    was refused (the current version keeps serving)."""
    meta, spec = mdep["metadata"], mdep["spec"]
    rollback = spec["rollback"]
    request = str(rollback["requestId"])
    role = spec["role"]
    done_with = "observedRollbackRequestId"

    def refuse(reason: str, message: str) -> Target | None:
        status[done_with] = request
        condition(_ROLLED_BACK, _FALSE, reason, message)
        actions.append(_event(ServingEventReason.ROLLBACK_FAILED, message, warning=True))
        return None

    if role in ALIAS_ROLES:
        name = rollback_job_name(meta["name"], request)
        if job is None:
            inputs = StageInputs(
                run=f"ModelDeployment/{meta['name']}",
                model_name=spec["model"]["name"],
                requested_by=str(
                    (rollback.get("requestedBy") or {}).get("username") or f"rollback request {request}"
                ),
                reason=str(rollback.get("reason", "")),
            )
            actions.append(CreateRollbackJob(name, inputs))
            actions.append(
                _event(ServingEventReason.ROLLBACK_STARTED, f"Moving the champion alias back: Job {name}")
            )
            message = f"Job {name} moves the champion alias back"
            condition(_ROLLED_BACK, _UNKNOWN, DeploymentReason.IN_PROGRESS, message)
            return WAIT
        if job.state == "Active":
            failure = start_failure(job.waiting)
            if failure is None:
                return WAIT
            # The Job's container will never start: refuse now, not at the Job's deadline.
            return refuse(str(failure[0]), f"rollback Job {name}: {failure[1]}")
        result = job.result
        if job.state != "Succeeded" or result is None or not result.passed or not result.model_version:
            reason = result.reason if result else DeploymentReason.JOB_FAILED
            message = result.message if result and result.message else f"rollback Job {name} failed"
            return refuse(reason, message)
        target_version = str(result.model_version)
    else:
        target_version = rollback.get("toVersion") or _previous_version(history, serving) or ""
        if not target_version:
            return refuse(
                DeploymentReason.NO_PREVIOUS_VERSION,
                f"{meta['name']} has served no earlier version to roll back to",
            )
    status[done_with] = request
    status["rolledBackFrom"] = serving or (spec["model"].get("version") or "")
    status["rolledBackTo"] = target_version
    # True only once the target serves (step 3 of decide_serving): a user's `kubectl wait
    # --for=condition=RolledBack` must not return while the old version still answers.
    message = f"Rolling back from version {serving or 'unknown'} to version {target_version}"
    condition(_ROLLED_BACK, _UNKNOWN, DeploymentReason.ROLLING_BACK, message)
    if spec["model"].get("alias"):
        # The alias itself moved in MLflow: restart the servers so they resolve it again.
        return Target(version=None, alias=spec["model"]["alias"], restart_token=request)
    return Target(version=target_version, alias=None)
