"""Stage definitions and the step inspector's data: `/steps/*`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from claimops_stages.contract import stage_summary

from .. import inspector
from ..actions import RUN_NAME
from ..deps import Svc
from ..schemas import DocumentedRoute, StageCode, StageConfig, StageDefinition, StageLog, StageOutputs
from ..views import check_stage, stage_code

router = APIRouter(tags=["steps"], route_class=DocumentedRoute)
StageName = Annotated[str, Path(max_length=64, description="Stage name, e.g. quick-train")]
RunQuery = Annotated[str | None, Query(pattern=RUN_NAME, max_length=40, description="PipelineRun name")]
RunRequired = Annotated[str, Query(pattern=RUN_NAME, max_length=40, description="PipelineRun name")]


@router.get("/steps", response_model=list[StageDefinition], summary="The twelve stage definitions")
def steps() -> list[dict[str, Any]]:
    return stage_summary()


@router.get("/steps/{name}/code", response_model=StageCode, summary="Source code of what the stage runs")
def code(name: StageName) -> dict[str, Any]:
    return stage_code(name)


@router.get(
    "/steps/{name}/config",
    response_model=StageConfig,
    summary="Stage configuration (a run's Job args/env and spec with ?run=)",
)
def config(name: StageName, svc: Svc, run: RunQuery = None) -> dict[str, Any]:
    check_stage(name)
    return inspector.config_for(svc, svc.kube.get_run(run) if run else None, name)


@router.get(
    "/steps/{name}/logs",
    response_model=StageLog,
    summary="A run's stage log (pod log, else the MLflow log artifact)",
)
def logs(name: StageName, svc: Svc, run: RunRequired) -> dict[str, Any]:
    check_stage(name)
    return inspector.logs_for(svc, svc.kube.get_run(run), name)


@router.get(
    "/steps/{name}/outputs",
    response_model=StageOutputs,
    summary="A run's stage result, MLflow metrics and artifacts",
)
def outputs(name: StageName, svc: Svc, run: RunRequired) -> dict[str, Any]:
    check_stage(name)
    return inspector.outputs_for(svc, svc.kube.get_run(run), name)
