"""The response models describe the views' bodies without reshaping them: a body validated by
its model and dumped the way the routes dump it (unset fields left out) is the same body."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from claimops_stages.claims import DEFAULT_WINDOW, generate_claims
from claimops_stages.contract import stage_summary
from claimops_ui import schemas, views
from claimops_ui.claims_stream import drift_summary
from claimops_ui.mlflow_gateway import flatten_run

RUN = {
    "metadata": {"name": "run-abc", "creationTimestamp": "2026-01-01T00:00:00Z", "resourceVersion": "7"},
    "spec": {"commit": {"sha": "abcdef1234", "message": "feat: x", "author": "ada"}, "continueToCD": True},
    "status": {
        "phase": "Running",
        "currentStage": "quick-train",
        "stages": [
            {"name": "commit", "state": "Succeeded", "attempt": 0},
            {
                "name": "quick-train",
                "state": "Running",
                "job": "run-abc-quick-train-1",
                "metrics": {"auc": 0.8},
            },
        ],
        "conditions": [
            {"type": "Succeeded", "status": "Unknown", "reason": "Running", "observedGeneration": 2},
        ],
        "evaluation": {"candidateAuc": 0.81, "passed": True},
        "mlflow": {"runIds": {"quick-train": "a" * 32}},
    },
}
DEPLOYMENT = {
    "metadata": {"name": "prod", "annotations": {}},
    "spec": {"role": "production", "model": {"name": "claim-settlement", "version": "3"}, "replicas": 2},
    "status": {
        "servingVersion": "3",
        "readyReplicas": 2,
        "url": "http://prod:8080",
        "history": [{"version": "2", "servedUntil": "2026-01-01T00:00:00Z"}],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Serving"},
            {"type": "RolledBack", "status": "False", "reason": "NotRequested"},
        ],
    },
}
MLFLOW_RUN = {
    "info": {"run_id": "b" * 32, "experiment_id": "1", "status": "FINISHED", "start_time": 1700000000000},
    "data": {"metrics": [{"key": "auc_roc", "value": 0.8}], "tags": [{"key": "seed", "value": "42"}]},
}
CLAIMS = generate_claims(400, seed=5, window=DEFAULT_WINDOW)

BODIES: list[tuple[str, type[BaseModel], Any]] = [
    ("run-summary", schemas.RunSummary, views.run_summary(RUN)),
    ("run-status", schemas.RunStatus, views.run_status(RUN)),
    ("rollback", schemas.RollbackResult, {"name": "prod", "rollback": {"requestId": "ui-1"}}),
    ("deployment", schemas.Deployment, views.deployment_view(DEPLOYMENT)),
    ("failure", schemas.FailureToggle, views.failure_list({})[0]),
    ("toggled", schemas.FailureToggle, {"mode": "SchemaValidation", "enabled": True}),
    ("stage", schemas.StageDefinition, stage_summary()[0]),
    ("stage-code", schemas.StageCode, views.stage_code("quick-train")),
    ("stage-config-defaults", schemas.StageConfig, views.stage_config("full-train")),
    ("stage-config-run", schemas.StageConfig, views.stage_config("commit", RUN)),
    ("mlflow-run", schemas.MlflowRun, flatten_run(MLFLOW_RUN)),
    (
        "mlflow-run-detail",
        schemas.MlflowRunDetail,
        views.mlflow_run_detail(
            flatten_run(MLFLOW_RUN), [{"path": "m.json", "is_dir": False, "file_size": 9}], "l"
        ),
    ),
    ("champion-none", schemas.Champion, views.champion_view("claim-settlement", None, None, "http://m")),
    ("claims", schemas.ClaimsSample, views.claims_sample(CLAIMS.head(3), 3, 5, "none")),
    ("drift", schemas.DriftSummary, {**drift_summary(CLAIMS, CLAIMS), "profile": "none", "source": "s"}),
    (
        "health",
        schemas.Health,
        views.health_view(
            {"runsSynced": True, "deploymentsSynced": False, "errors": ["e"]},
            True,
            version="1",
            namespace="ns",
            mlflow_url="http://m",
            read_only=True,
        ),
    ),
    ("error", schemas.ErrorBody, {"error": "NotFound", "detail": "no stage 'x'"}),
    (
        "invalid",
        schemas.ErrorBody,
        {"error": "InvalidInput", "detail": [{"loc": ["path", "run_id"], "msg": "m"}]},
    ),
]


@pytest.mark.parametrize(("model", "body"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_model_keeps_the_body_as_it_is(model: type[BaseModel], body: Any) -> None:
    assert model.model_validate(body).model_dump(mode="json", exclude_unset=True) == body


def test_unknown_fields_pass_through() -> None:
    body = {**views.failure_list({})[0], "since": "v2"}
    assert schemas.FailureToggle.model_validate(body).model_dump(exclude_unset=True) == body
