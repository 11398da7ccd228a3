"""PipelineRuns and ModelDeployments: the seed's `/pipeline/*` API, backed by the resources."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.concurrency import run_in_threadpool

from .. import actions
from ..actions import ApprovalRequest, RollbackRequest, RunRequest
from ..deps import RunName, Svc, User
from ..views import deployment_list, rollback_result, run_status, run_summary, sort_runs

router = APIRouter(tags=["pipeline"])


@router.get("/pipeline/runs", summary="List PipelineRuns (newest first)")
def list_runs(svc: Svc) -> list[dict[str, Any]]:
    return [run_summary(r) for r in sort_runs(svc.kube.list_runs())]


@router.post("/pipeline/start", status_code=201, summary="Start a PipelineRun")
async def start(user: User, svc: Svc, req: Annotated[RunRequest, Body()]) -> dict[str, Any]:
    run = await run_in_threadpool(actions.start_run, svc, user, req)
    return run_status(run)


@router.post(
    "/pipeline/commit",
    status_code=201,
    summary="Fake commit: a generated sha and message starts CI",
)
async def commit(user: User, svc: Svc, req: Annotated[RunRequest | None, Body()] = None) -> dict[str, Any]:
    request = req or RunRequest()
    request.sha = None  # a fake commit always gets a fresh sha
    run = await run_in_threadpool(actions.start_run, svc, user, request)
    return run_status(run)


@router.get("/pipeline/{run_id}/status", summary="Status of a PipelineRun")
def status(run_id: RunName, svc: Svc) -> dict[str, Any]:
    return run_status(svc.kube.get_run(run_id))


@router.post("/pipeline/{run_id}/continue", summary="Continue to CD (spec.continueToCD=true)")
async def continue_to_cd(run_id: RunName, user: User, svc: Svc) -> dict[str, Any]:
    return run_status(await run_in_threadpool(actions.continue_to_cd, svc, user, run_id))


@router.post("/pipeline/{run_id}/approve", summary="Approve the manual gate")
async def approve(
    run_id: RunName, user: User, svc: Svc, req: Annotated[ApprovalRequest | None, Body()] = None
) -> dict[str, Any]:
    comment = req.comment if req else ""
    return run_status(await run_in_threadpool(actions.decide, svc, user, run_id, "Approved", comment))


@router.post(
    "/pipeline/{run_id}/reject",
    summary="Reject the manual gate (a comment is required)",
)
async def reject(
    run_id: RunName, user: User, svc: Svc, req: Annotated[ApprovalRequest, Body()]
) -> dict[str, Any]:
    return run_status(await run_in_threadpool(actions.decide, svc, user, run_id, "Rejected", req.comment))


@router.post("/pipeline/{run_id}/cancel", summary="Cancel a PipelineRun (spec.cancel=true)")
async def cancel(run_id: RunName, user: User, svc: Svc) -> dict[str, Any]:
    return run_status(await run_in_threadpool(actions.cancel, svc, user, run_id))


@router.post(
    "/pipeline/rollback",
    summary="Roll production back (ModelDeployment spec.rollback)",
)
async def rollback(
    user: User, svc: Svc, req: Annotated[RollbackRequest | None, Body()] = None
) -> dict[str, Any]:
    patched = await run_in_threadpool(actions.rollback, svc, user, req or RollbackRequest())
    return rollback_result(patched)


@router.get("/deployments", summary="ModelDeployments (staging, shadow, production)")
def deployments(svc: Svc) -> list[dict[str, Any]]:
    return deployment_list(svc.kube.list_deployments())
