"""PipelineRuns and ModelDeployments: the seed's `/pipeline/*` API, backed by the resources."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.concurrency import run_in_threadpool

from claimops_stages.api_names import REQUESTED_BY_RUN

from .. import actions
from ..actions import RUN_NAME, ApprovalRequest, RollbackRequest, RunRequest
from ..deps import Services, mutation_user, services
from ..views import actions_for, condition, run_summary, sort_runs

router = APIRouter(tags=["pipeline"])
RunName = Annotated[str, Path(pattern=RUN_NAME, max_length=40, description="PipelineRun name")]
User = Annotated[str, Depends(mutation_user)]
Svc = Annotated[Services, Depends(services)]


def _status(run: dict[str, Any]) -> dict[str, Any]:
    status = run.get("status") or {}
    return {
        **run_summary(run),
        "spec": run.get("spec") or {},
        "stages": status.get("stages") or [],
        "conditions": status.get("conditions") or [],
        "approval": status.get("approval") or {},
        "evaluation": status.get("evaluation") or {},
        "shadow": status.get("shadow") or {},
        "mlflow": status.get("mlflow") or {},
        "actions": actions_for(run),
    }


@router.get("/pipeline/runs", summary="List PipelineRuns (newest first)")
def list_runs(svc: Svc) -> list[dict[str, Any]]:
    return [run_summary(r) for r in sort_runs(svc.kube.list_runs())]


@router.post("/pipeline/start", status_code=201, summary="Start a PipelineRun")
async def start(user: User, svc: Svc, req: Annotated[RunRequest, Body()]) -> dict[str, Any]:
    run = await run_in_threadpool(actions.start_run, svc, user, req)
    return _status(run)


@router.post(
    "/pipeline/commit", status_code=201, summary="Fake commit: a generated sha and message starts CI"
)
async def commit(user: User, svc: Svc, req: Annotated[RunRequest | None, Body()] = None) -> dict[str, Any]:
    request = req or RunRequest()
    request.sha = None  # a fake commit always gets a fresh sha
    run = await run_in_threadpool(actions.start_run, svc, user, request)
    return _status(run)


@router.get("/pipeline/{run_id}/status", summary="Status of a PipelineRun")
def status(run_id: RunName, svc: Svc) -> dict[str, Any]:
    return _status(svc.kube.get_run(run_id))


@router.post("/pipeline/{run_id}/continue", summary="Continue to CD (spec.continueToCD=true)")
async def continue_to_cd(run_id: RunName, user: User, svc: Svc) -> dict[str, Any]:
    return _status(await run_in_threadpool(actions.continue_to_cd, svc, user, run_id))


@router.post("/pipeline/{run_id}/approve", summary="Approve the manual gate")
async def approve(
    run_id: RunName, user: User, svc: Svc, req: Annotated[ApprovalRequest | None, Body()] = None
) -> dict[str, Any]:
    comment = req.comment if req else ""
    return _status(await run_in_threadpool(actions.decide, svc, user, run_id, "Approved", comment))


@router.post("/pipeline/{run_id}/reject", summary="Reject the manual gate (a comment is required)")
async def reject(
    run_id: RunName, user: User, svc: Svc, req: Annotated[ApprovalRequest, Body()]
) -> dict[str, Any]:
    return _status(await run_in_threadpool(actions.decide, svc, user, run_id, "Rejected", req.comment))


@router.post("/pipeline/{run_id}/cancel", summary="Cancel a PipelineRun (spec.cancel=true)")
async def cancel(run_id: RunName, user: User, svc: Svc) -> dict[str, Any]:
    return _status(await run_in_threadpool(actions.cancel, svc, user, run_id))


@router.post("/pipeline/rollback", summary="Roll production back (ModelDeployment spec.rollback)")
async def rollback(
    user: User, svc: Svc, req: Annotated[RollbackRequest | None, Body()] = None
) -> dict[str, Any]:
    patched = await run_in_threadpool(actions.rollback, svc, user, req or RollbackRequest())
    return {"name": patched["metadata"]["name"], "rollback": patched["spec"].get("rollback", {})}


def deployment_view(d: dict[str, Any]) -> dict[str, Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    ready = condition(d, "Ready")
    return {
        "name": d["metadata"]["name"],
        "role": spec.get("role"),
        "model": (spec.get("model") or {}).get("name"),
        "requestedVersion": (spec.get("model") or {}).get("version")
        or (spec.get("model") or {}).get("alias"),
        "servingVersion": status.get("servingVersion"),
        "ready": ready.get("status") == "True",
        "readyReason": ready.get("reason", ""),
        "readyMessage": ready.get("message", ""),
        "readyReplicas": status.get("readyReplicas", 0),
        "replicas": spec.get("replicas", 1),
        "url": status.get("url"),
        "history": status.get("history") or [],
        "rolledBackFrom": status.get("rolledBackFrom"),
        "rollback": spec.get("rollback"),
        "rolledBack": condition(d, "RolledBack"),
        "pipelineRun": (d["metadata"].get("annotations") or {}).get(REQUESTED_BY_RUN),
    }


@router.get("/deployments", summary="ModelDeployments (staging, shadow, production)")
def deployments(svc: Svc) -> list[dict[str, Any]]:
    order = {"staging": 0, "shadow": 1, "production": 2}
    views = [deployment_view(d) for d in svc.kube.list_deployments()]
    return sorted(views, key=lambda v: (order.get(str(v["role"]), 9), v["name"]))
