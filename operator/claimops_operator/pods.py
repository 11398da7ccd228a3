"""Containers that cannot start: the kubelet's waiting states, reduced to plain data.

A pod whose image cannot be pulled, or whose container the runtime cannot create, stays
``Pending`` with a waiting container and nothing else happens: its Job stays active until its
deadline, its Deployment keeps progressing until ``progressDeadlineSeconds``. The decisions
(:mod:`.pipeline`, :mod:`.serving`) turn such a waiting state into a final failure instead.

Pure: :func:`first_waiting` reads pods as plain dicts (the API's JSON, or a Kopf body) and
:func:`start_failure` says whether what it found is final.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class StartFailureReason(StrEnum):
    """Condition and stage reasons for a container that cannot start."""

    IMAGE_PULL_FAILED = "ImagePullFailed"
    CONTAINER_CANNOT_START = "ContainerCannotStart"


START_FAILURE_REASONS: frozenset[str] = frozenset(StartFailureReason)

#: Kubelet waiting reasons that end in ImagePullFailed. ErrImagePull counts at once: the kubelet
#: reports it for the failed pull and ImagePullBackOff (final anyway) from its next pod sync on,
#: seconds later and before it pulls again, so waiting for the back-off would delay the verdict
#: without giving a flaky registry another try; and ErrImagePull carries the registry's error,
#: the back-off message often only "Back-off pulling image".
IMAGE_PULL_REASONS: frozenset[str] = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
)
#: Kubelet waiting reasons that end in ContainerCannotStart (a missing Secret or ConfigMap key,
#: a runtime that refuses the container): the kubelet retries, the same spec fails the same way.
CANNOT_START_REASONS: frozenset[str] = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
#: The kubelet's message is quoted into conditions and Events: keep it readable.
MAX_KUBELET_MESSAGE = 1000


@dataclass(frozen=True)
class ContainerWaiting:
    """One waiting container of a pod, as the kubelet reported it."""

    pod: str
    container: str
    #: The image the pod spec asks for (the status may show a normalized name).
    image: str
    #: The kubelet's reason: ContainerCreating, ErrImagePull, CreateContainerConfigError, ...
    reason: str
    message: str = ""


def _waiting(pod: Mapping[str, Any]) -> list[ContainerWaiting]:
    meta, spec, status = (pod.get(key) or {} for key in ("metadata", "spec", "status"))
    images = {
        str(c.get("name")): str(c.get("image") or "")
        for key in ("initContainers", "containers")
        for c in spec.get(key) or ()
    }
    found = []
    for key in ("initContainerStatuses", "containerStatuses"):  # init containers run first
        for container in status.get(key) or ():
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason"):
                name = str(container.get("name") or "")
                found.append(
                    ContainerWaiting(
                        pod=str(meta.get("name") or ""),
                        container=name,
                        image=images.get(name) or str(container.get("image") or ""),
                        reason=str(waiting["reason"]),
                        message=str(waiting.get("message") or ""),
                    )
                )
    return found


def first_waiting(pods: Iterable[Mapping[str, Any]]) -> ContainerWaiting | None:
    """The first waiting container of `pods` that cannot start, else the first waiting one.

    Pods being deleted are left out: what they wait for no longer matters.
    """
    waiting = [
        w for pod in pods if not (pod.get("metadata") or {}).get("deletionTimestamp") for w in _waiting(pod)
    ]
    return next((w for w in waiting if start_failure(w) is not None), waiting[0] if waiting else None)


def start_failure(waiting: ContainerWaiting | None) -> tuple[StartFailureReason, str] | None:
    """(reason, message) when `waiting` means the container will never start, else None
    (ContainerCreating, PodInitializing and unknown reasons are progress)."""
    if waiting is None:
        return None
    detail = waiting.reason
    if waiting.message:
        detail += f": {waiting.message[:MAX_KUBELET_MESSAGE]}"
    where = f"container {waiting.container} of pod {waiting.pod}"
    if waiting.reason in IMAGE_PULL_REASONS:
        return (
            StartFailureReason.IMAGE_PULL_FAILED,
            f'Cannot pull image "{waiting.image}" for {where} ({detail})',
        )
    if waiting.reason in CANNOT_START_REASONS:
        return (
            StartFailureReason.CONTAINER_CANNOT_START,
            f'The {where} (image "{waiting.image}") cannot start ({detail})',
        )
    return None
