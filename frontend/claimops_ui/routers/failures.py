"""Failure-mode toggles: the defaults new runs get, kept in a ConfigMap: `/failures/*`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.concurrency import run_in_threadpool

from claimops_stages.contract import FAILURE_REASONS, FailureMode

from .. import actions
from ..deps import Services, mutation_user, services

router = APIRouter(tags=["failures"])
Svc = Annotated[Services, Depends(services)]
User = Annotated[str, Depends(mutation_user)]

EFFECTS = {
    FailureMode.SCHEMA_VALIDATION: "data-validation fails on a missing column",
    FailureMode.METRIC_REGRESSION: "the candidate is worse than the champion and the gate fails",
    FailureMode.MLFLOW_CONNECTION: "stages cannot reach MLflow",
    FailureMode.TRAINING_ERROR: "ci-tests fail",
}


def failure_list(defaults: dict[str, bool]) -> list[dict[str, Any]]:
    return [
        {
            "mode": m.value,
            "enabled": defaults.get(m.value, False),
            "effect": EFFECTS[m],
            "reason": FAILURE_REASONS[m].value,
        }
        for m in FailureMode
    ]


@router.get("/failures", summary="Failure modes and whether new runs get them")
def failures(svc: Svc) -> list[dict[str, Any]]:
    return failure_list(svc.kube.failure_defaults())


@router.post("/failures/{mode}/toggle", summary="Toggle a failure mode for new runs")
async def toggle(mode: Annotated[str, Path(max_length=64)], user: User, svc: Svc) -> dict[str, Any]:
    return await run_in_threadpool(actions.toggle_failure, svc, user, mode)
