"""Pods whose image cannot be pulled, on the real control plane: the operator hears the pod's
waiting state and fails the PipelineRun (or marks the ModelDeployment not Ready) within
seconds instead of waiting for a deadline.

The node stand-in plays the kubelet of a node whose registry lacks the image: it leaves such a
pod Pending with its container waiting in ErrImagePull (tests/harness/node_standin.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from claimops_stages.api_names import API_VERSION, LABEL_PART_OF, MODEL_DEPLOYMENT, PART_OF
from tests.cluster.test_operator import condition, get_run, jobs, phase_is, run_manifest, stage, wait_for
from tests.conftest import OperatorFactory
from tests.harness.control_plane import ControlPlane
from tests.harness.node_standin import NodeStandIn

pytestmark = pytest.mark.cluster

#: The requirement: an unpullable image ends the run within a minute (the deadline is 30 min).
FAST = 60.0


@pytest.fixture
def missing_image(namespace: str, node_standin: NodeStandIn) -> Iterator[str]:
    image = f"registry.invalid/claimops/stages:missing-{namespace}"
    node_standin.missing_images.add(image)
    try:
        yield image
    finally:
        node_standin.missing_images.discard(image)


def events_of(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    listing = cp.kubectl(
        "get", "events", "-n", namespace, f"--field-selector=involvedObject.name={name}", "-o", "json"
    ).stdout
    items: list[dict[str, Any]] = json.loads(listing)["items"]
    return items


def wait_for_event(cp: ControlPlane, namespace: str, name: str, reason: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [e for e in events_of(cp, namespace, name) if e.get("reason") == reason]
        if found:
            return found[0]
        time.sleep(0.5)
    pytest.fail(f"no {reason} Event for {name}: {[e.get('reason') for e in events_of(cp, namespace, name)]}")


def test_a_stage_image_that_cannot_be_pulled_fails_the_run_at_once_without_retry(
    control_plane: ControlPlane, namespace: str, start_operator: OperatorFactory, missing_image: str
) -> None:
    cp = control_plane
    operator = start_operator(namespace, CLAIMOPS_STAGE_IMAGE=missing_image)
    cp.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(run_manifest("unpullable", retries=2)))
    started = time.monotonic()
    run = wait_for(
        cp, namespace, "unpullable", "Failed", phase_is("Failed"), timeout=FAST, operator_log=operator.log
    )
    assert time.monotonic() - started < FAST

    succeeded = condition(run, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "ImagePullFailed")
    assert f'"{missing_image}"' in succeeded["message"]
    assert "ErrImagePull" in succeeded["message"]
    assert "not found" in succeeded["message"]
    ci = stage(run, "ci-tests")
    assert (ci["state"], ci["reason"], ci["attempt"]) == ("Failed", "ImagePullFailed", 1)
    assert f'"{missing_image}"' in ci["message"]
    assert ci["message"].startswith("Job unpullable-ci-tests-1: ")
    assert condition(run, "CIPassed")["reason"] == "ImagePullFailed"
    assert {s["state"] for s in run["status"]["stages"][2:]} == {"Skipped"}

    event = wait_for_event(cp, namespace, "unpullable", "StageFailed")
    assert event["type"] == "Warning"
    assert missing_image in event["message"]
    assert "ImagePullFailed" in event["message"]
    wait_for_event(cp, namespace, "unpullable", "RunFailed")

    # No second attempt (retries: 2 would allow one), and the stuck Job is gone.
    assert [e["reason"] for e in events_of(cp, namespace, "unpullable")].count("StageStarted") == 1
    assert "StageRetry" not in {e["reason"] for e in events_of(cp, namespace, "unpullable")}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and jobs(cp, namespace):
        time.sleep(0.5)
    assert jobs(cp, namespace) == []
    assert get_run(cp, namespace, "unpullable")["status"] == run["status"]
    assert cp.kubectl("get", "mdep", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_a_model_server_image_that_cannot_be_pulled_makes_the_deployment_not_ready(
    control_plane: ControlPlane, namespace: str, start_operator: OperatorFactory, missing_image: str
) -> None:
    cp = control_plane
    operator = start_operator(namespace)
    name = "unpullable-staging"
    manifest = {
        "apiVersion": API_VERSION,
        "kind": MODEL_DEPLOYMENT.kind,
        "metadata": {"name": name, "labels": {LABEL_PART_OF: PART_OF}},
        "spec": {
            "role": "staging",
            "model": {"name": "claim-settlement", "version": "1"},
            "image": missing_image,
        },
    }
    cp.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    deadline = time.monotonic() + FAST
    found: dict[str, Any] = {}
    ready: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = json.loads(cp.kubectl("get", "mdep", name, "-n", namespace, "-o", "json").stdout)
        ready = condition(found, "Ready")
        if ready.get("reason") == "ImagePullFailed":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"{name} never said ImagePullFailed: {ready}\n{operator.log()[-3000:]}")

    assert ready["status"] == "False"
    assert f'"{missing_image}"' in ready["message"]
    assert "ErrImagePull" in ready["message"]
    progressing = condition(found, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ImagePullFailed")
    assert progressing["message"] == ready["message"]
    event = wait_for_event(cp, namespace, name, "ImagePullFailed")
    assert event["type"] == "Warning"
    assert missing_image in event["message"]
