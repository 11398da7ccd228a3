"""`/health`: is the UI connected to the Kubernetes API and MLflow (always 200; see the body)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from .. import __version__
from ..deps import Services, services

router = APIRouter(tags=["health"])


@router.get("/health", summary="Connectivity of the UI's backends")
async def health(svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    kube = svc.kube.health()
    mlflow_ok = await run_in_threadpool(svc.mlflow.health)
    ok = kube["runsSynced"] and not kube["errors"] and mlflow_ok
    return {
        "status": "ok" if ok else "degraded",
        "version": __version__,
        "namespace": svc.config.namespace,
        "kubernetes": kube,
        "mlflow": {"ok": mlflow_ok, "url": svc.config.mlflow_link},
        "readOnly": not svc.authenticator.enabled,
    }
