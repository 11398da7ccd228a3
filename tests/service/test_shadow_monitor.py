"""The shadow-monitor stage between two real model-server processes on a real `mlflow server`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from claimops_stages.contract import ResultStatus, StageInputs
from tests.harness.mlflow_server import MlflowServer
from tests.harness.model_server import ModelServer, register_model
from tests.service.conftest import StageRunner

pytestmark = pytest.mark.service

MODEL = "shadow-test"


@pytest.fixture(scope="module")
def versions(sqlite_mlflow: MlflowServer) -> tuple[str, str]:
    """Two versions trained on different samples: v1 is the champion."""
    first, _ = register_model(sqlite_mlflow.url, MODEL, rows=4000, seed=11, alias="champion")
    second, _ = register_model(sqlite_mlflow.url, MODEL, rows=4000, seed=12)
    return first, second


@pytest.fixture(scope="module")
def servers(
    sqlite_mlflow: MlflowServer, versions: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ModelServer]]:
    workdir = tmp_path_factory.mktemp("shadow-servers")
    started = {
        "v1": ModelServer(sqlite_mlflow.url, MODEL, workdir, version=versions[0]),
        "v1-again": ModelServer(sqlite_mlflow.url, MODEL, workdir, version=versions[0]),
        "v2": ModelServer(sqlite_mlflow.url, MODEL, workdir, version=versions[1]),
    }
    try:
        for server in started.values():
            server.start()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def runner(sqlite_mlflow: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> StageRunner:
    return StageRunner(sqlite_mlflow.url, Path(tmp_path_factory.mktemp("shadow-runner")))


def inputs(
    servers: dict[str, ModelServer], production: str | None, shadow: str, **extra: object
) -> StageInputs:
    base = StageInputs(
        run="shadow-test", commit_sha="abcdef1", model_name=MODEL, rows=2000, seed=5, candidate_version="2"
    )
    return replace(
        base,
        production_url=servers[production].url if production else None,
        shadow_url=servers[shadow].url,
        **extra,  # type: ignore[arg-type]
    )


def test_identical_versions_agree_completely(runner: StageRunner, servers: dict[str, ModelServer]) -> None:
    run = runner("shadow-monitor", inputs(servers, "v1", "v1-again"))
    assert run.exit_code == 0, run.stdout[-2000:]
    metrics = run.result.metrics
    assert metrics["agreement"] == 1.0
    assert metrics["mean_abs_probability_diff"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["production_errors"] == metrics["shadow_errors"] == 0
    assert metrics["claims"] == 2000
    assert metrics["shadow_p99_ms"] >= metrics["shadow_p50_ms"] > 0
    assert run.result.reason == "Passed"
    assert run.result.outputs["production_version"] == run.result.outputs["shadow_version"] == "1"
    assert run.result.outputs["drifted_features"] == ""


def test_different_versions_mostly_agree_and_the_gate_uses_the_threshold(
    runner: StageRunner, servers: dict[str, ModelServer]
) -> None:
    lenient = runner("shadow-monitor", inputs(servers, "v1", "v2", min_shadow_agreement=0.5))
    assert lenient.exit_code == 0, lenient.stdout[-2000:]
    agreement = lenient.result.metrics["agreement"]
    assert 0.7 < agreement < 1.0  # two forests from different samples: close, not identical
    assert lenient.result.metrics["mean_abs_probability_diff"] > 0

    strict = runner("shadow-monitor", inputs(servers, "v1", "v2", min_shadow_agreement=0.999))
    assert strict.exit_code == 1
    assert strict.result.status is ResultStatus.FAILED
    assert strict.result.reason == "ShadowDisagreement"
    assert "agrees with production v1" in strict.result.message


def test_severe_drift_trips_the_psi_gate(runner: StageRunner, servers: dict[str, ModelServer]) -> None:
    run = runner("shadow-monitor", inputs(servers, "v1", "v1-again", drift="severe"))
    assert run.exit_code == 1
    assert run.result.reason == "DriftDetected"
    assert run.result.metrics["max_psi"] > 0.2
    assert run.result.metrics["agreement"] == 1.0  # the models agree; the traffic moved
    mild = runner("shadow-monitor", inputs(servers, "v1", "v1-again", drift="none"))
    assert mild.result.metrics["max_psi"] < run.result.metrics["max_psi"]


def test_without_production_it_says_so(runner: StageRunner, servers: dict[str, ModelServer]) -> None:
    run = runner("shadow-monitor", inputs(servers, None, "v2"))
    assert run.exit_code == 0, run.stdout[-2000:]
    assert run.result.reason == "NoProduction"
    assert "agreement" not in run.result.metrics
    assert run.result.outputs["shadow_version"] == "2"


def test_an_unreachable_shadow_fails_the_stage(runner: StageRunner, servers: dict[str, ModelServer]) -> None:
    unreachable = replace(inputs(servers, "v1", "v2"), shadow_url="http://127.0.0.1:9")
    run = runner("shadow-monitor", unreachable)
    assert run.exit_code == 1
    assert run.result.reason == "ShadowDisagreement"
    assert "answered nothing" in run.result.message
