"""What the buttons do: each one a create or merge patch on the resources kubectl uses, made as
the signed-in user. Shared by the JSON API and the pages' form posts."""

from __future__ import annotations

import random
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from claimops_stages.api_names import (
    API_VERSION,
    CREATED_BY_USER,
    LABEL_CREATED_BY,
    LABEL_PART_OF,
    PART_OF,
    PIPELINE_RUN,
)
from claimops_stages.claims import DRIFT_PROFILES
from claimops_stages.contract import FailureMode

from .errors import Conflict, InvalidInput, NotFound
from .views import TERMINAL, approval_decision

if TYPE_CHECKING:  # deps imports RUN_NAME from here
    from .deps import Services

RUN_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SHA = r"^[0-9a-f]{7,40}$"
_COMMIT_MESSAGES = (
    "feat: add provider-specialty interaction features",
    "fix: clip negative allowed amounts before scaling",
    "perf: vectorise the billed-amount outlier feature",
    "feat: calibrate approval probabilities with isotonic regression",
    "chore: bump scikit-learn and retrain",
    "refactor: split the diagnosis-group encoder",
    "feat: tune max depth for the surgery bucket",
)


class RunRequest(BaseModel):
    """A new PipelineRun. Unset fields take the CRD's defaults; failureInjection defaults to
    the failure toggles (ConfigMap)."""

    sha: str | None = Field(default=None, pattern=SHA, description="Commit SHA (generated when absent).")
    message: str | None = Field(default=None, max_length=4096)
    author: str | None = Field(default=None, max_length=256)
    rows: int | None = Field(default=None, ge=1000, le=2_000_000)
    seed: int | None = Field(default=None, ge=0, le=4_294_967_295)
    drift: str | None = Field(default=None, pattern="^(none|mild|severe)$")
    nEstimators: int | None = Field(default=None, ge=10, le=1000)
    autoContinueToCD: bool = False
    failureInjection: list[FailureMode] | None = Field(default=None, max_length=4)


class ApprovalRequest(BaseModel):
    comment: str = Field(default="", max_length=1024)


class RollbackRequest(BaseModel):
    toVersion: str | None = Field(default=None, pattern="^[1-9][0-9]{0,9}$")
    reason: str = Field(default="", max_length=1024)


def _run_name(sha: str) -> str:
    # Sortable by time and unique without a lookup; <= 40 characters (the CRD's limit).
    return f"run-{sha[:7]}-{int(time.time()) % 100000:05d}{secrets.token_hex(2)}"


def build_run(req: RunRequest, user: str, defaults: dict[str, bool]) -> dict[str, Any]:
    sha = req.sha or secrets.token_hex(20)
    failures = (
        [m.value for m in req.failureInjection]
        if req.failureInjection is not None
        else [m for m, on in defaults.items() if on]
    )
    spec: dict[str, Any] = {
        "commit": {
            "sha": sha,
            "message": req.message or random.choice(_COMMIT_MESSAGES),
            "author": req.author or user,
        },
        "autoContinueToCD": req.autoContinueToCD,
    }
    dataset = {
        k: v for k, v in {"rows": req.rows, "seed": req.seed, "drift": req.drift}.items() if v is not None
    }
    if dataset:
        spec["dataset"] = dataset
    if req.nEstimators is not None:
        spec["training"] = {"nEstimators": req.nEstimators}
    if failures:
        spec["failureInjection"] = sorted(set(failures))
    return {
        "apiVersion": API_VERSION,
        "kind": PIPELINE_RUN.kind,
        "metadata": {
            "name": _run_name(sha),
            "labels": {LABEL_PART_OF: PART_OF, LABEL_CREATED_BY: "ui"},
            "annotations": {CREATED_BY_USER: user},
        },
        "spec": spec,
    }


def start_run(svc: Services, user: str, req: RunRequest) -> dict[str, Any]:
    if req.drift is not None and req.drift not in DRIFT_PROFILES:
        raise InvalidInput(f"unknown drift {req.drift}")
    body = build_run(req, user, svc.kube.failure_defaults())
    return svc.kube.create_run(user, body)


def _live_run(svc: Services, name: str) -> dict[str, Any]:
    if not re.match(RUN_NAME, name):
        raise InvalidInput(f"{name!r} is not a PipelineRun name")
    run = svc.kube.get_run(name)
    if (run.get("status") or {}).get("phase") in TERMINAL:
        raise Conflict(f"PipelineRun {name} has finished ({run['status']['phase']})")
    return run


def continue_to_cd(svc: Services, user: str, name: str) -> dict[str, Any]:
    _live_run(svc, name)
    return svc.kube.patch_run(user, name, {"spec": {"continueToCD": True}})


def decide(svc: Services, user: str, name: str, decision: str, comment: str) -> dict[str, Any]:
    """Cast `user`'s ballot. The chart's approvals admission policies record it in
    spec.decisions under the authenticated user (and reset spec.approval to Pending), or refuse
    it with their own message (not an approver, four-eyes, twice, gate decided): the API server
    decides who may, the UI only spares it the requests that cannot succeed."""
    run = _live_run(svc, name)
    current = approval_decision(run)
    if current != "Pending":
        raise Conflict(f"PipelineRun {name} was already {current.lower()}")
    if decision == "Rejected" and not comment.strip():
        raise InvalidInput("a rejection needs a comment")
    approval: dict[str, Any] = {"decision": decision, "by": user}
    if comment.strip():
        approval["comment"] = comment.strip()
    return svc.kube.patch_run(user, name, {"spec": {"approval": approval}})


def cancel(svc: Services, user: str, name: str) -> dict[str, Any]:
    _live_run(svc, name)
    return svc.kube.patch_run(user, name, {"spec": {"cancel": True}})


def rollback(svc: Services, user: str, req: RollbackRequest) -> dict[str, Any]:
    production = svc.kube.deployment_for_role("production")
    if production is None:
        raise NotFound("no production ModelDeployment to roll back")
    request_id = f"ui-{int(time.time())}-{secrets.token_hex(3)}"
    rollback: dict[str, Any] = {
        "requestId": request_id,
        "reason": (req.reason or f"rollback requested by {user}")[:1024],
    }
    if req.toVersion:
        rollback["toVersion"] = req.toVersion
    return svc.kube.patch_deployment(user, production["metadata"]["name"], {"spec": {"rollback": rollback}})


def toggle_failure(svc: Services, user: str, mode: str) -> dict[str, Any]:
    try:
        failure = FailureMode(mode)
    except ValueError as exc:
        raise NotFound(f"no failure mode {mode!r}; modes: {', '.join(m.value for m in FailureMode)}") from exc
    current = svc.kube.failure_defaults()
    updated = svc.kube.set_failure_default(user, failure.value, not current[failure.value])
    return {"mode": failure.value, "enabled": updated[failure.value]}
