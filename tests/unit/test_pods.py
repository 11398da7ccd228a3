"""Pods reduced to what their containers wait for (claimops_operator.pods), without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from claimops_operator.gateway import deleted_jobs_still_running, pod_lost
from claimops_operator.pods import ContainerWaiting, StartFailureReason, first_waiting, start_failure
from claimops_stages.api_names import LABEL_ATTEMPT, LABEL_STAGE

IMAGE = "registry.invalid/claimops/stages:missing"


def pod(
    name: str = "demo-ci-tests-1-x7k2p",
    *statuses: tuple[str, dict[str, Any]],
    init: tuple[tuple[str, dict[str, Any]], ...] = (),
    deleting: bool = False,
    image: str = IMAGE,
) -> dict[str, Any]:
    """A pod as the API serves it; `statuses` are (container name, state) pairs."""
    meta: dict[str, Any] = {"name": name, "namespace": "claims"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-26T04:00:00Z"
    return {
        "metadata": meta,
        "spec": {
            "initContainers": [{"name": n, "image": image} for n, _ in init],
            "containers": [{"name": n, "image": image} for n, _ in statuses],
        },
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": n, "image": f"docker.io/{image}", "state": s} for n, s in init
            ],
            "containerStatuses": [
                {"name": n, "image": f"docker.io/{image}", "state": s} for n, s in statuses
            ],
        },
    }


def waits(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


RUNNING: dict[str, Any] = {"running": {"startedAt": "2026-11-26T04:00:00Z"}}


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param([], None, id="no-pods"),
        pytest.param([{"metadata": {"name": "p"}}], None, id="pod-without-status"),
        pytest.param([pod("p", ("stage", RUNNING))], None, id="running"),
        pytest.param(
            [pod("p", ("stage", waits("ImagePullBackOff", "Back-off pulling image")))],
            ContainerWaiting("p", "stage", IMAGE, "ImagePullBackOff", "Back-off pulling image"),
            id="image-from-the-spec-not-the-normalized-status",
        ),
        pytest.param(
            [pod("p", ("stage", waits("ContainerCreating")))],
            ContainerWaiting("p", "stage", IMAGE, "ContainerCreating"),
            id="progress-is-reported-too",
        ),
        pytest.param(
            [
                pod("a", ("stage", waits("ContainerCreating"))),
                pod("b", ("stage", waits("ErrImagePull", "not found"))),
            ],
            ContainerWaiting("b", "stage", IMAGE, "ErrImagePull", "not found"),
            id="a-start-failure-wins-over-progress",
        ),
        pytest.param(
            [
                pod(
                    "p",
                    ("main", waits("PodInitializing")),
                    init=(("setup", waits("CreateContainerConfigError")),),
                )
            ],
            ContainerWaiting("p", "setup", IMAGE, "CreateContainerConfigError"),
            id="init-container",
        ),
        pytest.param(
            [pod("p", ("stage", waits("ImagePullBackOff")), deleting=True)], None, id="pod-being-deleted"
        ),
    ],
)
def test_first_waiting(pods: list[dict[str, Any]], expected: ContainerWaiting | None) -> None:
    assert first_waiting(pods) == expected


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("ErrImagePull", StartFailureReason.IMAGE_PULL_FAILED),
        ("ImagePullBackOff", StartFailureReason.IMAGE_PULL_FAILED),
        ("ErrImageNeverPull", StartFailureReason.IMAGE_PULL_FAILED),
        ("InvalidImageName", StartFailureReason.IMAGE_PULL_FAILED),
        ("CreateContainerConfigError", StartFailureReason.CONTAINER_CANNOT_START),
        ("CreateContainerError", StartFailureReason.CONTAINER_CANNOT_START),
        ("RunContainerError", StartFailureReason.CONTAINER_CANNOT_START),
        ("ContainerCreating", None),
        ("PodInitializing", None),
        ("CrashLoopBackOff", None),  # it started: the Job or Deployment reports the rest
    ],
    ids=lambda v: str(v),
)
def test_start_failure_reasons(reason: str, expected: StartFailureReason | None) -> None:
    failure = start_failure(ContainerWaiting("p", "stage", IMAGE, reason, "why"))
    assert (failure[0] if failure else None) == expected
    if failure is not None:
        assert f'"{IMAGE}"' in failure[1]
        assert f"({reason}: why)" in failure[1]


def test_a_long_kubelet_message_is_cut() -> None:
    failure = start_failure(ContainerWaiting("p", "stage", IMAGE, "ErrImagePull", "x" * 5000))
    assert failure is not None
    assert len(failure[1]) < 1200


# A failed stage Job whose pod never reported a result: was the pod lost, and how?


def _terminated(code: int, reason: str = "Error") -> dict[str, Any]:
    return {
        "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": code, "reason": reason}}}]}
    }


@pytest.mark.parametrize(
    ("pods", "says"),
    [
        ([], "its pod was deleted before it reported a result"),
        (
            [
                {
                    "status": {
                        "conditions": [
                            {
                                "type": "DisruptionTarget",
                                "status": "True",
                                "reason": "EvictionByEvictionAPI",
                                "message": "Eviction API: evicting",
                            }
                        ]
                    }
                }
            ],
            "disrupted (EvictionByEvictionAPI",
        ),
        (
            [{"metadata": {"deletionTimestamp": "2026-12-02T02:00:00Z"}, "status": {}}],
            "deleted before it finished",
        ),
        ([_terminated(143)], "killed (exit code 143"),
        ([_terminated(137, "ContainerStatusUnknown")], "node restarted"),
    ],
    ids=["no-pod-left", "evicted", "being-deleted", "sigterm", "status-unknown"],
)
def test_a_lost_pod_is_told_apart_from_a_failing_stage(pods: list[dict[str, Any]], says: str) -> None:
    lost = pod_lost(pods)
    assert lost is not None
    assert says in lost


def test_a_stage_that_exits_with_an_error_was_not_lost() -> None:
    assert pod_lost([_terminated(1)]) is None


def job_pod(job: str, phase: str, attempt: str = "1") -> dict[str, Any]:
    """A stage pod as the Job controller makes it: its Job's labels and owner reference."""
    return {
        "metadata": {
            "name": f"{job}-x7k2p",
            "labels": {
                LABEL_STAGE: "quick-train",
                LABEL_ATTEMPT: attempt,
                "batch.kubernetes.io/job-name": job,
            },
            "ownerReferences": [{"kind": "Job", "name": job, "uid": f"uid-of-{job}"}],
        },
        "status": {"phase": phase},
    }


def test_a_pod_still_running_after_its_job_was_deleted_stands_for_that_job() -> None:
    pods = {
        "demo-quick-train-1": [job_pod("demo-quick-train-1", "Running")],  # its Job was deleted
        "demo-quick-train-2": [job_pod("demo-quick-train-2", "Pending", "2")],  # its Job is listed
        "demo-quick-train-3": [job_pod("demo-quick-train-3", "Failed", "3")],  # ended: nothing to wait for
    }
    found = deleted_jobs_still_running(pods, {"demo-quick-train-2"})
    assert [(j.name, j.attempt, j.state, j.uid, j.job_deleted) for j in found] == [
        ("demo-quick-train-1", 1, "Active", "uid-of-demo-quick-train-1", True)
    ]
