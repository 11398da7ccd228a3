"""`/health`: is the UI connected to the Kubernetes API and MLflow (always 200; see the body)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from .. import __version__
from ..deps import Svc
from ..schemas import DocumentedRoute, Health
from ..views import health_view

router = APIRouter(tags=["health"], route_class=DocumentedRoute)


@router.get("/health", response_model=Health, summary="Connectivity of the UI's backends")
async def health(svc: Svc) -> dict[str, Any]:
    kube = svc.kube.health()
    mlflow_ok = await run_in_threadpool(svc.mlflow.health)
    return health_view(
        kube,
        mlflow_ok,
        version=__version__,
        namespace=svc.config.namespace,
        mlflow_url=svc.config.mlflow_link,
        read_only=not svc.authenticator.enabled,
    )
