"""The same two-commit flow with MLflow's metadata in PostgreSQL and its artifacts in a real
S3-compatible store (MinIO) that the tracking server reaches through boto3."""

from __future__ import annotations

import pytest

from claimops_stages.claims import generate_claims
from claimops_stages.training import model_frame
from tests.harness.object_store import MinioServer
from tests.harness.postgres import Postgres
from tests.service.conftest import (
    ARTIFACT_BUCKET,
    COMMIT_STAGES,
    MODEL,
    Commits,
    StageRunner,
    run_two_commits,
)

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def two_commits(postgres_runner: StageRunner) -> Commits:
    return run_two_commits(postgres_runner, ("pg-1", "1a2b3c4"), ("pg-2", "5d6e7f8"))


def test_both_commits_pass_every_stage(two_commits: Commits) -> None:
    for commit, runs in two_commits.items():
        assert list(runs) == list(COMMIT_STAGES), commit
        failed = {stage: run.result.message for stage, run in runs.items() if run.exit_code != 0}
        assert failed == {}, commit
    assert two_commits["first"]["evaluate-vs-champion"].result.reason == "NoChampion"
    second = two_commits["second"]["evaluate-vs-champion"].result
    assert (second.reason, second.outputs["champion_version"], second.outputs["candidate_version"]) == (
        "Passed",
        "1",
        "2",
    )


def test_registry_state_lives_in_postgres(two_commits: Commits, postgres: Postgres) -> None:
    assert postgres.query(f"SELECT count(*) FROM model_versions WHERE name = '{MODEL}'") == "2"
    assert (
        postgres.query(
            f"SELECT version FROM registered_model_aliases WHERE name = '{MODEL}' AND alias = 'champion'"
        )
        == "2"
    )
    assert (
        postgres.query("SELECT value FROM model_version_tags WHERE version = 2 AND key = 'previous_champion'")
        == "1"
    )


def test_artifacts_are_objects_in_the_bucket(two_commits: Commits, minio: MinioServer) -> None:
    keys = minio.keys(ARTIFACT_BUCKET, "mlflow/")
    run_id = two_commits["first"]["full-train"].result.mlflow_run_id
    run_keys = {k.split(f"{run_id}/artifacts/", 1)[1] for k in keys if f"{run_id}/artifacts/" in k}
    assert {"plots/shap_summary.png", "plots/feature_importance.png", "logs/full-train.log"} <= run_keys
    # MLflow 3 keeps logged models under models/<model id>/: the skops file must be there.
    assert any(k.endswith("/artifacts/model.skops") and "/models/m-" in k for k in keys)


def test_champion_loads_back_from_the_object_store(
    two_commits: Commits, postgres_runner: StageRunner
) -> None:
    model = postgres_runner.load_model(f"models:/{MODEL}@champion")
    proba = model.predict_proba(model_frame(generate_claims(20, seed=8)))[:, 1]
    assert proba.shape == (20,)
