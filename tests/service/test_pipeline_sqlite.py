"""Every stage, in order, for two commits, against a real `mlflow server` (SQLite backend,
proxied local artifacts); then each failure injection and a rollback."""

from __future__ import annotations

import importlib.metadata
import json
from datetime import datetime
from pathlib import Path

import mlflow.artifacts
import numpy as np
import pytest

from claimops_stages.claims import generate_claims
from claimops_stages.contract import FAILURE_REASONS, FailureMode
from claimops_stages.training import model_frame
from tests.service.conftest import COMMIT_STAGES, MODEL, Commits, StageRunner, commit_inputs, run_two_commits

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def two_commits(sqlite_runner: StageRunner) -> Commits:
    return run_two_commits(sqlite_runner, ("cpr-1", "a1b2c3d"), ("cpr-2", "e4f5a6b"))


@pytest.mark.parametrize("commit", ["first", "second"])
def test_every_stage_passes_in_order(two_commits: Commits, commit: str) -> None:
    runs = two_commits[commit]
    assert list(runs) == list(COMMIT_STAGES)
    for stage, run in runs.items():
        assert (run.exit_code, run.result.status.value) == (0, "Succeeded"), (stage, run.result.message)
        assert run.result.stage == stage
        assert run.result.mlflow_run_id


def test_first_commit_registers_v1_and_passes_with_no_champion(two_commits: Commits) -> None:
    first = two_commits["first"]
    assert first["full-train"].result.model_version == "1"
    evaluation = first["evaluate-vs-champion"].result
    assert evaluation.reason == "NoChampion"
    assert "champion_auc" not in evaluation.metrics
    outputs = first["promote-production"].result.outputs
    assert outputs.pop("release_digest").startswith("sha256:")
    assert outputs.pop("release_uri").endswith("/release/release-v1.intoto.json")
    assert outputs == {
        "champion_version": "1",
        "previous_champion_version": "",
        "experiment_id": first["full-train"].result.outputs["experiment_id"],
    }


def test_second_commit_is_evaluated_against_v1(two_commits: Commits) -> None:
    second = two_commits["second"]
    assert second["full-train"].result.model_version == "2"
    evaluation = second["evaluate-vs-champion"].result
    assert evaluation.reason == "Passed"
    assert (evaluation.outputs["candidate_version"], evaluation.outputs["champion_version"]) == ("2", "1")
    m = evaluation.metrics
    assert m["auc_delta"] == pytest.approx(m["candidate_auc"] - m["champion_auc"])
    assert m["auc_delta_ci_low"] <= m["auc_delta"] <= m["auc_delta_ci_high"]
    assert second["promote-production"].result.outputs["previous_champion_version"] == "1"


@pytest.mark.parametrize(
    ("commit", "stage", "champion", "challenger"),
    [
        ("first", "full-train", None, None),
        ("first", "evaluate-vs-champion", None, "1"),
        ("first", "promote-production", "1", None),
        ("second", "full-train", "1", None),
        ("second", "evaluate-vs-champion", "1", "2"),
        ("second", "promote-production", "2", None),
    ],
    ids=["v1-registered", "v1-challenger", "v1-champion", "v2-registered", "v2-challenger", "v2-champion"],
)
def test_aliases_move_only_at_evaluation_and_promotion(
    two_commits: Commits, commit: str, stage: str, champion: str | None, challenger: str | None
) -> None:
    assert two_commits[commit][stage].aliases_after == {"champion": champion, "challenger": challenger}


def test_promotion_history_is_kept_in_version_tags(two_commits: Commits, sqlite_runner: StageRunner) -> None:
    client = sqlite_runner.client()
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["previous_champion"] == "1"
    assert tags["promoted_by"] == "service-test"
    assert tags["promoted_by_pipeline_run"] == "cpr-2"
    assert tags["commit_sha"] == "e4f5a6b"
    assert datetime.fromisoformat(tags["promoted_at"]).tzinfo is not None
    assert client.get_model_version(MODEL, "1").tags["demoted_by_version"] == "2"


def test_training_run_is_tagged_explained_and_loadable(
    two_commits: Commits, sqlite_runner: StageRunner, tmp_path: Path
) -> None:
    client = sqlite_runner.client()
    run = client.get_run(two_commits["first"]["full-train"].result.mlflow_run_id or "")
    assert {
        k: run.data.tags[k] for k in ("commit_sha", "stage", "dataset_window", "seed", "model_version")
    } == {
        "commit_sha": "a1b2c3d",
        "stage": "full-train",
        "dataset_window": "2026-01-01/2026-03-31",
        "seed": "42",
        "model_version": "1",
    }
    assert {"accuracy", "f1", "auc_roc", "precision", "recall"} <= set(run.data.metrics)
    assert run.data.params["n_estimators"] == "40"
    # The SHAP method and sample are a recorded choice, not a hidden one.
    assert run.data.params["shap_rows"] == "500"
    assert "TreeSHAP" in run.data.params["shap_method"]
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/shap_summary.png", "plots/feature_importance.png"}
    model = sqlite_runner.load_model(f"models:/{MODEL}/1")
    # The requirements are the image's own pins, not MLflow's guess (load_model set the URI).
    requirements = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{MODEL}/1/requirements.txt",
            dst_path=str(tmp_path),
            tracking_uri=sqlite_runner.tracking_uri,
        )
    )
    pins = set(requirements.read_text().split())
    assert {f"{d}=={importlib.metadata.version(d)}" for d in ("mlflow", "scikit-learn", "skops")} <= pins
    proba = model.predict_proba(model_frame(generate_claims(50, seed=5)))[:, 1]
    assert ((proba >= 0) & (proba <= 1)).all()
    assert np.ptp(proba) > 0.1  # it discriminates


def test_ci_summary_run_gathers_the_ci_stages(two_commits: Commits, sqlite_runner: StageRunner) -> None:
    runs = two_commits["first"]
    client = sqlite_runner.client()
    summary_run = runs["mlflow-log"].result.mlflow_run_id or ""
    path = client.download_artifacts(summary_run, "ci_summary.json")
    with open(path) as fh:
        summary = json.load(fh)
    assert set(summary) == {"ci-tests", "data-validation", "quick-train"}
    assert summary["quick-train"]["run_id"] == runs["quick-train"].result.mlflow_run_id
    assert client.get_run(summary_run).data.metrics["ci_auc_roc"] == pytest.approx(
        runs["quick-train"].result.metrics["auc_roc"]
    )


@pytest.mark.parametrize("stage", COMMIT_STAGES)
def test_stage_log_goes_to_stdout_and_to_mlflow(
    two_commits: Commits, sqlite_runner: StageRunner, stage: str
) -> None:
    run = two_commits["first"][stage]
    assert f"stage {stage} of pipeline run cpr-1" in run.stdout
    path = sqlite_runner.client().download_artifacts(run.result.mlflow_run_id or "", f"logs/{stage}.log")
    with open(path) as fh:
        assert f"{stage} Succeeded" in fh.read()


@pytest.mark.parametrize(
    ("stage", "failure", "says"),
    [
        ("ci-tests", "TrainingError", "self-checks FAILED"),
        ("data-validation", "SchemaValidation", "missing column 'allowed_amount'"),
        ("evaluate-vs-champion", "MetricRegression", "vs champion"),
        ("full-train", "MLflowConnection", "unreachable"),
        ("promote-production", "MLflowConnection", "unreachable"),
        ("rollback", "MLflowConnection", "unreachable"),
    ],
    ids=[
        "training-error-fails-ci-tests",
        "schema-validation-names-the-column",
        "metric-regression-fails-the-gate",
        "mlflow-down-during-full-train",
        "mlflow-down-during-promote",
        "mlflow-down-during-rollback",
    ],
)
def test_failure_injection_reports_its_reason_and_moves_no_alias(
    two_commits: Commits, sqlite_runner: StageRunner, stage: str, failure: str, says: str
) -> None:
    client = sqlite_runner.client()
    aliases_before = sqlite_runner.aliases()
    versions_before = len(client.search_model_versions(f"name = '{MODEL}'"))
    inputs = commit_inputs(f"cpr-fail-{stage}", "0badc0d", failures=[failure], candidate_version="2")

    run = sqlite_runner(stage, inputs)

    assert run.exit_code == 1
    assert run.result.reason == FAILURE_REASONS[FailureMode(failure)].value
    assert says in run.result.message
    assert sqlite_runner.aliases() == aliases_before
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == versions_before
    if failure == "MLflowConnection":
        assert run.result.mlflow_run_id is None
    else:  # the failed stage's run is in MLflow, marked failed, with its reason
        mlflow_run = client.get_run(run.result.mlflow_run_id or "")
        assert mlflow_run.info.status == "FAILED"
        assert mlflow_run.data.tags["result_reason"] == run.result.reason


def test_rollback_restores_the_previous_champion_once(
    two_commits: Commits, sqlite_runner: StageRunner
) -> None:
    inputs = commit_inputs("cpr-rollback", "e4f5a6b")
    assert sqlite_runner.aliases()["champion"] == "2"

    back = sqlite_runner("rollback", inputs)
    assert (back.exit_code, back.result.model_version) == (0, "1")
    assert back.result.outputs["rolled_back_from_version"] == "2"
    assert sqlite_runner.aliases()["champion"] == "1"
    assert sqlite_runner.client().get_model_version(MODEL, "2").tags["rolled_back_to"] == "1"

    # v1 was the first champion: there is nothing further back, and the champion stays.
    again = sqlite_runner("rollback", inputs)
    assert (again.exit_code, again.result.reason) == (1, "NoPreviousChampion")
    assert sqlite_runner.aliases()["champion"] == "1"
