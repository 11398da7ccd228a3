"""PipelineRuns and ModelDeployments: the seed's `/pipeline/*` API, backed by the resources."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.concurrency import run_in_threadpool

from .. import actions
from ..actions import ApprovalRequest, RollbackRequest, RunRequest
from ..deps import RunName, Svc, User
from ..schemas import Deployment, DocumentedRoute, RollbackResult, RunStatus, RunSummary
from ..views import deployment_list, rollback_result, run_status, run_summary, sort_runs

router = APIRouter(tags=["pipeline"], route_class=DocumentedRoute)


@router.get("/pipeline/runs", response_model=list[RunSummary], summary="List PipelineRuns (newest first)")
def list_runs(svc: Svc) -> list[dict[str, Any]]:
    return [run_summary(r) for r in sort_runs(svc.kube.list_runs())]


@router.post("/pipeline/start", response_model=RunStatus, status_code=201, summary="Start a PipelineRun")
async def start(user: User, svc: Svc, req: Annotated[RunRequest, Body()]) -> dict[str, Any]:
    run = await run_in_threadpool(actions.start_run, svc, user, req)
    return run_status(run)


@router.post(
    "/pipeline/commit",
    response_model=RunStatus,
    status_code=201,
    summary="Fake commit: a generated sha and message starts CI",
)
async def commit(user: User, svc: Svc, req: Annotated[RunRequest | None, Body()] = None) -> dict[str, Any]:
    request = req or RunRequest()
    request.sha = None  # a fake commit always gets a fresh sha
    run = await run_in_threadpool(actions.start_run, svc, user, request)
    return run_status(run)


@router.get("/pipeline/{run_id}/status", response_model=RunStatus, summary="Status of a PipelineRun")
def status(run_id: RunName, svc: Svc) -> dict[str, Any]:
    return run_status(svc.kube.get_run(run_id))


@router.post(
    "/pipeline/{run_id}/continue", response_model=RunStatus, summary="Continue to CD (spec.continueToCD=true)"
)
async def continue_to_cd(run_id: RunName, user: User, svc: Svc) -> dict[str, Any]:
    return run_status(await run_in_threadpool(actions.continue_to_cd, svc, user, run_id))


@router.post("/pipeline/{run_id}/approve", response_model=RunStatus, summary="Approve the manual gate")
async def approve(
    run_id: RunName, user: User, svc: Svc, req: Annotated[ApprovalRequest | None, Body()] = None
) -> dict[str, Any]:
    comment = req.comment if req else ""
    return run_status(await run_in_threadpool(actions.decide, svc, user, run_id, "Approved", comment))


@router.post(
    "/pipeline/{run_id}/reject",
    response_model=RunStatus,
    summary="Reject the manual gate (a comment is required)",
)
async def reject(
    run_id: RunName, user: User, svc: Svc, req: Annotated[ApprovalRequest, Body()]
) -> dict[str, Any]:
    return run_status(await run_in_threadpool(actions.decide, svc, user, run_id, "Rejected", req.comment))


@router.post(
    "/pipeline/{run_id}/cancel", response_model=RunStatus, summary="Cancel a PipelineRun (spec.cancel=true)"
)
async def cancel(run_id: RunName, user: User, svc: Svc) -> dict[str, Any]:
    return run_status(await run_in_threadpool(actions.cancel, svc, user, run_id))


@router.post(
    "/pipeline/rollback",
    response_model=RollbackResult,
    summary="Roll production back (ModelDeployment spec.rollback)",
)
async def rollback(
    user: User, svc: Svc, req: Annotated[RollbackRequest | None, Body()] = None
) -> dict[str, Any]:
    patched = await run_in_threadpool(actions.rollback, svc, user, req or RollbackRequest())
    return rollback_result(patched)


@router.get(
    "/deployments", response_model=list[Deployment], summary="ModelDeployments (staging, shadow, production)"
)
def deployments(svc: Svc) -> list[dict[str, Any]]:
    return deployment_list(svc.kube.list_deployments())
