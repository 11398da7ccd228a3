"""Failure-mode toggles: the defaults new runs get, kept in a ConfigMap: `/failures/*`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool

from .. import actions
from ..deps import Svc, User
from ..schemas import DocumentedRoute, FailureToggle
from ..views import failure_list

router = APIRouter(tags=["failures"], route_class=DocumentedRoute)


@router.get(
    "/failures", response_model=list[FailureToggle], summary="Failure modes and whether new runs get them"
)
def failures(svc: Svc) -> list[dict[str, Any]]:
    return failure_list(svc.kube.failure_defaults())


@router.post(
    "/failures/{mode}/toggle", response_model=FailureToggle, summary="Toggle a failure mode for new runs"
)
async def toggle(mode: Annotated[str, Path(max_length=64)], user: User, svc: Svc) -> dict[str, Any]:
    return await run_in_threadpool(actions.toggle_failure, svc, user, mode)
