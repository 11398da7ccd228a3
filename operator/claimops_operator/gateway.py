"""The operator's narrow interface to the Kubernetes API: read what a run owns, apply actions.

Everything here is I/O; the decisions are in :mod:`claimops_operator.pipeline`. The official
client is synchronous, so the handlers call these methods in a worker thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from claimops_stages.api_names import (
    GROUP,
    LABEL_ATTEMPT,
    LABEL_MANAGED_BY,
    LABEL_MODEL_DEPLOYMENT,
    LABEL_RUN,
    LABEL_STAGE,
    MANAGED_BY,
    MODELDEPLOYMENTS,
    PIPELINERUNS,
    SPEC_HASH,
    VERSION,
)
from claimops_stages.contract import StageResult

from .builders import model_server_selector
from .metrics import API_WRITES
from .pipeline import JobState, ObservedDeployment, ObservedJob
from .pods import ContainerWaiting, first_waiting
from .serving import ObservedRollout

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def _unless_gone(read: Callable[[], _T]) -> _T | None:
    """`read()`, or None when the API answers 404: an object deleted meanwhile is an answer
    (nothing there), not an error; every other API error propagates."""
    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _condition(conditions: list[Any] | None, type_: str) -> Any | None:
    return next((c for c in conditions or [] if c.type == type_), None)


def job_state(job: Any) -> tuple[JobState, str | None]:
    """Active, Succeeded or Failed, with the reason of the Failed condition.

    ``FailureTarget`` (the Job controller decided the Job fails) is not yet Failed: its pod may
    still be terminating (a deleted pod, a deadline), and a retry started then would run two
    attempts of one stage at once. ``Failed`` comes once every pod has ended."""
    conditions = job.status.conditions if job.status else None
    for type_ in ("Complete", "SuccessCriteriaMet"):
        cond = _condition(conditions, type_)
        if cond is not None and cond.status == "True":
            return "Succeeded", None
    cond = _condition(conditions, "Failed")
    if cond is not None and cond.status == "True":
        return "Failed", cond.reason
    return "Active", None


def deleted_jobs_still_running(
    pods_by_job: Mapping[str, list[dict[str, Any]]], jobs: Collection[str]
) -> list[ObservedJob]:
    """Jobs that are gone while a pod of theirs has not ended (deleted with background
    propagation: the pods stop after the Job object is gone), as Active Jobs."""
    observed = []
    for name, pods in pods_by_job.items():
        running = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        if name in jobs or not running:
            continue
        meta = running[0].get("metadata") or {}
        labels = meta.get("labels") or {}
        if LABEL_STAGE not in labels or LABEL_ATTEMPT not in labels:
            continue
        owner = next(
            (r.get("uid", "") for r in meta.get("ownerReferences") or [] if r.get("kind") == "Job"), ""
        )
        observed.append(
            ObservedJob(
                stage=labels[LABEL_STAGE],
                attempt=int(labels[LABEL_ATTEMPT]),
                name=name,
                uid=owner,
                state="Active",
                job_deleted=True,
            )
        )
    return observed


#: Exit codes of a container ended by SIGKILL / SIGTERM (128 + signal).
_KILLED_EXIT_CODES = frozenset({137, 143})


def pod_lost(pods: list[dict[str, Any]]) -> str | None:
    """Why a failed Job's pod never reported a result, when it was lost rather than failing:
    deleted, evicted or preempted, its container killed, or no pod left at all."""
    if not pods:
        return "its pod was deleted before it reported a result"
    for pod in pods:
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
                return f"its pod was disrupted ({cond.get('reason')}: {cond.get('message', '')})".strip()
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            return "its pod was deleted before it finished"
        for container in status.get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            reason = terminated.get("reason") or ""
            if terminated.get("exitCode") in _KILLED_EXIT_CODES or reason == "ContainerStatusUnknown":
                return (
                    f"its container was killed (exit code {terminated.get('exitCode')}, {reason or 'signal'}) "
                    "before it reported a result: the pod was deleted, evicted or its node restarted"
                )
    return None


def parse_result(message: str | None) -> StageResult | None:
    if not message:
        return None
    try:
        return StageResult.from_json(message)
    except (ValueError, TypeError, KeyError):
        return None


class KubernetesGateway:
    """Reads and writes for one operator process (one ApiClient, connection-pooled)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.batch: Any = client.BatchV1Api(api_client)
        self.core: Any = client.CoreV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.apps: Any = client.AppsV1Api(api_client)
        # A finished Job's result never changes: read its pod once.
        self._results: dict[str, StageResult | None] = {}
        self._losses: dict[str, str] = {}
        #: job key -> (image, imageID) of its finished pod, read with the result.
        self._images: dict[str, tuple[str, str]] = {}

    # -- reads --

    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_custom(PIPELINERUNS, namespace, name)

    def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_custom(MODELDEPLOYMENTS, namespace, name)

    def _get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One claimops.io object, or None when it is gone."""
        found: dict[str, Any] | None = _unless_gone(
            lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        )
        return found

    def list_runs(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace:
            listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PIPELINERUNS)
        else:
            listing = self.custom.list_cluster_custom_object(GROUP, VERSION, PIPELINERUNS)
        items: list[dict[str, Any]] = listing.get("items", [])
        return items

    def active_stage_jobs(self, namespace: str | None) -> dict[tuple[str, str], list[str]]:
        """Stage Jobs still running, by (namespace, run): the slots in use at start."""
        selector = f"{LABEL_RUN},{LABEL_MANAGED_BY}={MANAGED_BY}"
        if namespace:
            jobs = self.batch.list_namespaced_job(namespace, label_selector=selector).items
        else:
            jobs = self.batch.list_job_for_all_namespaces(label_selector=selector).items
        held: dict[tuple[str, str], list[str]] = {}
        for job in jobs:
            if job_state(job)[0] == "Active":
                meta = job.metadata
                held.setdefault((meta.namespace, meta.labels[LABEL_RUN]), []).append(meta.name)
        return held

    def observed_jobs(
        self, namespace: str, run: str, owner_uid: str | None = None, stage_running: bool = True
    ) -> list[ObservedJob]:
        """The stage Jobs of a PipelineRun; with `owner_uid`, only those that object owns.

        Job names are deterministic, so a PipelineRun deleted and created again under the same
        name finds its predecessor's Jobs until the garbage collector removes them: they are
        not its own and must not be adopted (their results are another run's). Without
        `stage_running` (no stage of the run's status is Running) no deleted Job's pod is
        looked for."""
        selector = f"{LABEL_RUN}={run},{LABEL_MANAGED_BY}={MANAGED_BY}"
        return self._observe_jobs(namespace, selector, owner_uid, stage_running)

    def rollback_jobs(self, namespace: str, model_deployment: str) -> list[ObservedJob]:
        """The rollback Jobs of a ModelDeployment."""
        selector = f"{LABEL_MODEL_DEPLOYMENT}={model_deployment},{LABEL_MANAGED_BY}={MANAGED_BY}"
        return self._observe_jobs(namespace, selector)

    def _observe_jobs(
        self, namespace: str, selector: str, owner_uid: str | None = None, stage_running: bool = True
    ) -> list[ObservedJob]:
        listed = jobs = self.batch.list_namespaced_job(namespace, label_selector=selector).items
        if owner_uid is not None:
            jobs = [
                job
                for job in listed
                if any(ref.uid == owner_uid for ref in job.metadata.owner_references or [])
            ]
        # The pods carry their Job's labels: one read answers for every active Job and, while a
        # stage runs, for pods whose Job was deleted before they ended.
        active = any(job_state(job)[0] == "Active" for job in jobs)
        pods_by_job = self._pods_by_job(namespace, selector) if active or stage_running else {}
        observed = deleted_jobs_still_running(pods_by_job, {job.metadata.name for job in listed})
        for job in jobs:
            labels = job.metadata.labels or {}
            if LABEL_STAGE not in labels or LABEL_ATTEMPT not in labels:
                continue
            state, failure_reason = job_state(job)
            result, lost = (
                self._outcome(namespace, job.metadata.name, state) if state != "Active" else (None, None)
            )
            observed.append(
                ObservedJob(
                    stage=labels[LABEL_STAGE],
                    attempt=int(labels[LABEL_ATTEMPT]),
                    name=job.metadata.name,
                    uid=job.metadata.uid or "",
                    state=state,
                    result=result,
                    failure_reason=failure_reason,
                    pod_lost=lost,
                    started_at=job.status.start_time if job.status else None,
                    finished_at=_finished_at(job),
                    waiting=first_waiting(pods_by_job.get(job.metadata.name, ()))
                    if state == "Active"
                    else None,
                    image=self._images.get(f"{namespace}/{job.metadata.name}", ("", ""))[0],
                    image_id=self._images.get(f"{namespace}/{job.metadata.name}", ("", ""))[1],
                )
            )
        return observed

    def _pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods as the API's plain JSON (what :mod:`.pods` reads; no client models needed)."""
        response = self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

    def _pods_by_job(self, namespace: str, selector: str) -> dict[str, list[dict[str, Any]]]:
        by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in self._pods(namespace, selector):
            job = ((pod.get("metadata") or {}).get("labels") or {}).get("batch.kubernetes.io/job-name")
            if job:
                by_job.setdefault(job, []).append(pod)
        return by_job

    def model_server_waiting(self, namespace: str, name: str) -> ContainerWaiting | None:
        """A waiting container of a ModelDeployment's model server pods, if any."""
        selector = ",".join(f"{k}={v}" for k, v in model_server_selector(name).items())
        return first_waiting(self._pods(namespace, selector))

    def _outcome(self, namespace: str, job_name: str, state: str) -> tuple[StageResult | None, str | None]:
        """A finished Job's result (from its pod's termination message) and, for a failed Job
        without one, how its pod was lost (deleted, evicted, killed) if it was."""
        key = f"{namespace}/{job_name}"
        if key in self._results:
            return self._results[key], self._losses.get(key)
        pods = self._pods(namespace, f"batch.kubernetes.io/job-name={job_name}")
        result = None
        for pod in pods:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                terminated = (status.get("state") or {}).get("terminated")
                if terminated is not None:
                    result = parse_result(terminated.get("message")) or result
                    if status.get("imageID"):
                        self._images[key] = (status.get("image") or "", status["imageID"])
        lost = pod_lost(pods) if state == "Failed" and result is None else None
        if result is not None or not pods or lost:
            # Cache only a definite answer; a pod whose status lags is read again next time.
            self._results[key] = result
            if lost:
                self._losses[key] = lost
        return result, lost

    def observed_deployments(self, namespace: str, model_name: str) -> dict[str, ObservedDeployment]:
        listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, MODELDEPLOYMENTS)
        deployments: dict[str, ObservedDeployment] = {}
        for item in listing.get("items", []):
            spec, status = item.get("spec", {}), item.get("status", {}) or {}
            if spec.get("model", {}).get("name") != model_name:
                continue
            ready: dict[str, Any] = next(
                (c for c in status.get("conditions", []) if c.get("type") == "Ready"), {}
            )
            up_to_date = status.get("observedGeneration") == item["metadata"].get("generation")
            deployments[spec["role"]] = ObservedDeployment(
                role=spec["role"],
                ready=ready.get("status") == "True" and up_to_date,
                serving_version=status.get("servingVersion"),
                reason=str(ready.get("reason", "")),
                message=str(ready.get("message", "")),
                url=status.get("url"),
                current=up_to_date,
            )
        return deployments

    def observed_rollout(self, namespace: str, name: str) -> ObservedRollout | None:
        deployment = _unless_gone(lambda: self.apps.read_namespaced_deployment(name, namespace))
        if deployment is None:
            return None
        status = deployment.status
        progressing = _condition(status.conditions if status else None, "Progressing")
        failure = None
        if progressing is not None and progressing.status == "False":
            failure = f"{progressing.reason}: {progressing.message}"
        return ObservedRollout(
            generation=deployment.metadata.generation or 0,
            observed_generation=(status.observed_generation if status else 0) or 0,
            replicas=deployment.spec.replicas or 0,
            ready_replicas=(status.ready_replicas if status else 0) or 0,
            updated_replicas=(status.updated_replicas if status else 0) or 0,
            available_replicas=(status.available_replicas if status else 0) or 0,
            spec_hash=(deployment.metadata.annotations or {}).get(SPEC_HASH, ""),
            failure=failure,
        )

    # -- writes (each counted: the bench reports API writes per run) --

    def create_job(self, manifest: Mapping[str, Any]) -> bool:
        """Create a Job; False when it already exists (a restarted operator, a lagging cache)."""
        try:
            self.batch.create_namespaced_job(manifest["metadata"]["namespace"], manifest)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        finally:
            API_WRITES.labels(verb="create", resource="jobs").inc()
        return True

    def job_owner_uids(self, namespace: str, name: str) -> list[str] | None:
        """The owner UIDs of a Job; None when there is no such Job."""
        job = _unless_gone(lambda: self.batch.read_namespaced_job(name, namespace))
        if job is None:
            return None
        return [ref.uid for ref in job.metadata.owner_references or []]

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
        finally:
            API_WRITES.labels(verb="delete", resource="jobs").inc()

    def apply_model_deployment(self, manifest: Mapping[str, Any]) -> None:
        """Create or update the ModelDeployment's spec (server-side apply, field manager claimops)."""
        meta = manifest["metadata"]
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            meta["namespace"],
            MODELDEPLOYMENTS,
            meta["name"],
            manifest,
            field_manager=MANAGED_BY,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
        API_WRITES.labels(verb="apply", resource=MODELDEPLOYMENTS).inc()

    def apply(self, manifest: Mapping[str, Any]) -> None:
        """Server-side apply of a Deployment or Service (field manager claimops-operator)."""
        kind, meta = manifest["kind"], manifest["metadata"]
        api, method = {
            "Deployment": (self.apps, "patch_namespaced_deployment"),
            "Service": (self.core, "patch_namespaced_service"),
        }[kind]
        getattr(api, method)(
            meta["name"],
            meta["namespace"],
            manifest,
            field_manager=MANAGED_BY,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
        API_WRITES.labels(verb="apply", resource=kind.lower() + "s").inc()

    def patch_model_deployment_status(
        self, namespace: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        self._patch_status(MODELDEPLOYMENTS, namespace, name, old, new)

    def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about `obj`, as kopf.event would post it (used where kopf's posting
        context is missing)."""
        meta = obj.get("metadata") or {}
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{meta.get('name', 'claimops')}.", namespace=meta.get("namespace")
            ),
            involved_object=client.V1ObjectReference(
                api_version=obj.get("apiVersion"),
                kind=obj.get("kind"),
                name=meta.get("name"),
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            source=client.V1EventSource(component="claimops-operator"),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        self.core.create_namespaced_event(meta.get("namespace"), event)

    def patch_run_status(
        self, namespace: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        """Make the run's status `new` with one JSON merge patch (keys `new` drops become null)."""
        self._patch_status(PIPELINERUNS, namespace, name, old, new)

    def _patch_status(
        self, plural: str, namespace: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        """Both custom resources write their status the same way: one merge patch of the
        status subresource, counted as a patch of `<plural>/status`."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": merge_patch(old, new)}
        )
        API_WRITES.labels(verb="patch", resource=f"{plural}/status").inc()


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns `old` into `new` (lists are replaced whole)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before or key not in old:
            patch[key] = value
    return patch


def _finished_at(job: Any) -> datetime | None:
    if not job.status:
        return None
    if job.status.completion_time:
        return job.status.completion_time
    failed = _condition(job.status.conditions, "Failed")
    return failed.last_transition_time if failed is not None else None
