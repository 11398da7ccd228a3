"""The MLflow explorer's data: `/mlflow/*` (read-only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from claimops_stages.contract import SPEC_DEFAULTS

from ..deps import Svc
from ..mlflow_gateway import CHALLENGER, CHAMPION, INLINE_TYPES
from ..schemas import Champion, DocumentedRoute, MlflowRun, MlflowRunDetail
from ..views import champion_view, mlflow_run_detail

router = APIRouter(tags=["mlflow"], route_class=DocumentedRoute)
RunId = Annotated[str, Path(pattern="^[0-9a-f]{32}$", description="MLflow run id")]
MODEL: str = SPEC_DEFAULTS["model.name"]


@router.get(
    "/mlflow/runs", response_model=list[MlflowRun], summary="MLflow runs, newest first, with metrics and tags"
)
def runs(svc: Svc, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict[str, Any]]:
    return svc.mlflow.search_runs(max_results=limit)


@router.get(
    "/mlflow/runs/{run_id}", response_model=MlflowRunDetail, summary="One MLflow run with its artifacts"
)
def run(run_id: RunId, svc: Svc) -> dict[str, Any]:
    found = svc.mlflow.get_run(run_id)
    artifacts = svc.mlflow.all_artifacts(run_id)
    return mlflow_run_detail(found, artifacts, svc.mlflow.run_link(found["experimentId"], run_id))


@router.get(
    "/mlflow/champion", response_model=Champion, summary="Champion and challenger of the registered model"
)
def champion(
    svc: Svc, model: Annotated[str, Query(pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)] = MODEL
) -> dict[str, Any]:
    return champion_view(
        model,
        svc.mlflow.alias(model, CHAMPION),
        svc.mlflow.alias(model, CHALLENGER),
        svc.mlflow.model_link(model),
    )


@router.get(
    "/mlflow/artifacts/{run_id}/{path:path}",
    response_class=Response,
    # The artifact's own bytes, as one of the types the UI shows inline.
    responses={200: {"content": {t: {} for t in sorted(set(INLINE_TYPES.values()))}}},
    summary="An image/text artifact of a run",
)
def artifact(run_id: RunId, path: Annotated[str, Path(max_length=512)], svc: Svc) -> Response:
    content, media_type = svc.mlflow.artifact(run_id, path)
    return Response(content, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})
