"""Failure modes on the kind cluster: each ends with its documented reason within its bound,
and none moves the champion."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import KindCluster, champion_version, pipelinerun

pytestmark = pytest.mark.e2e


def failed_condition(kind: KindCluster, name: str, timeout: float) -> dict[str, str]:
    def probe() -> dict[str, str] | None:
        cond = kind.condition("cpr", name, "Succeeded")
        return cond if cond.get("status") == "False" else None

    return dict(kind.wait_for(f"cpr/{name} to fail", probe, timeout, every=2))


def test_mlflow_connection_fails_within_seconds_with_its_reason(
    kind: KindCluster, mlflow: httpx.Client
) -> None:
    name = "e2e-mlflow-down"
    before = champion_version(mlflow)
    kind.kubectl("delete", "cpr", name, "--ignore-not-found", "--wait=true")
    kind.kubectl(
        "apply",
        "-f",
        "-",
        stdin=pipelinerun(name, "ab12cd3" + "0" * 33, failureInjection=["MLflowConnection"]),
    )
    cond = failed_condition(kind, name, timeout=300)
    assert cond["reason"] == "MLflowUnavailable", cond
    assert champion_version(mlflow) == before
    kind.kubectl("delete", "cpr", name, "--wait=false")


def test_a_stage_image_that_does_not_exist_fails_within_a_minute_naming_it(
    kind: KindCluster, mlflow: httpx.Client
) -> None:
    name = "e2e-no-image"
    image = "claimops/stages:does-not-exist"
    before = champion_version(mlflow)
    kind.kubectl("delete", "cpr", name, "--ignore-not-found", "--wait=true")
    kind.kubectl("apply", "-f", "-", stdin=pipelinerun(name, "ef45ab6" + "0" * 33, stageImage=image))
    started = time.monotonic()
    cond = failed_condition(kind, name, timeout=90)
    elapsed = time.monotonic() - started
    assert cond["reason"] != "StageTimeout", cond
    assert cond["reason"] == "ImagePullFailed", cond
    assert image in cond["message"], cond
    assert elapsed < 60, f"took {elapsed:.0f} s"
    stage = next(s for s in kind.get("cpr", name)["status"]["stages"] if s["name"] == "ci-tests")
    assert stage["state"] == "Failed", stage
    assert image in stage["message"], stage
    assert champion_version(mlflow) == before
    kind.kubectl("delete", "cpr", name, "--wait=false")
