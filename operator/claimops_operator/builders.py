"""Manifests of the children a PipelineRun owns: stage Jobs and ModelDeployments.

Pure functions from plain data to plain dicts (like Tekton's reconciler `resources/`
package), so they are tested without a cluster. Owner references are added by the handlers
(`kopf.adopt`).
"""

from __future__ import annotations

from typing import Any

from claimops_stages.contract import (
    DEFAULT_TERMINATION_MESSAGE_PATH,
    TERMINATION_MESSAGE_PATH_ENV,
    StageInputs,
)

from .config import OperatorConfig

GROUP = "claimops.io"
VERSION = "v1alpha1"
PART_OF = "claimops"
MANAGED_BY = "claimops-operator"

LABEL_RUN = f"{GROUP}/pipeline-run"
LABEL_STAGE = f"{GROUP}/stage"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_ROLE = f"{GROUP}/role"

#: Kubernetes keeps a Job's pods this long after it finishes (enough for the UI to show logs).
JOB_TTL_SECONDS = 24 * 3600

#: Pod Security `restricted` for every pod ClaimOps starts.
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def common_labels(run: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "claimops",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/component": component,
        LABEL_RUN: run,
    }


def stage_job(
    *,
    run: str,
    namespace: str,
    stage: str,
    attempt: int,
    job_name: str,
    inputs: StageInputs,
    deadline_seconds: int,
    config: OperatorConfig,
) -> dict[str, Any]:
    """The batch/v1 Job that runs one attempt of one stage."""
    labels = {**common_labels(run, "stage"), LABEL_STAGE: stage, LABEL_ATTEMPT: str(attempt)}
    env: list[dict[str, Any]] = [
        {"name": "MLFLOW_TRACKING_URI", "value": config.mlflow_tracking_uri},
        {"name": TERMINATION_MESSAGE_PATH_ENV, "value": DEFAULT_TERMINATION_MESSAGE_PATH},
        {"name": "CLAIMOPS_PIPELINE_RUN", "value": run},
        {"name": "CLAIMOPS_STAGE_ATTEMPT", "value": str(attempt)},
        # Libraries that cache to $HOME (matplotlib, numba) need a writable home.
        {"name": "HOME", "value": "/tmp"},
        {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
    ]
    env += [{"name": k, "value": v} for k, v in sorted(config.stage_env.items())]
    env += [
        {"name": ref.env, "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}}
        for ref in config.mlflow_secret_env
    ]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [
            {
                "name": "stage",
                "image": config.stage_image,
                "imagePullPolicy": config.image_pull_policy,
                "command": ["python", "-m", "claimops_stages", stage],
                "args": inputs.to_args(),
                "env": env,
                "resources": {
                    "requests": {"cpu": config.stage_cpu_request, "memory": config.stage_memory_request},
                    "limits": {"memory": config.stage_memory_limit},
                },
                "terminationMessagePath": DEFAULT_TERMINATION_MESSAGE_PATH,
                # A stage that crashes before writing its result still tells why.
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": CONTAINER_SECURITY_CONTEXT,
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if config.stage_service_account:
        pod_spec["serviceAccountName"] = config.stage_service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,  # the operator retries, with its own backoff and attempt numbers
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def model_deployment_name(model_name: str, role: str) -> str:
    return f"{model_name}-{role}"[:50].rstrip("-")


def model_deployment(*, run: str, namespace: str, role: str, model_name: str, version: str) -> dict[str, Any]:
    """The ModelDeployment that serves `version` in `role` (staging, shadow or production)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {
            "name": model_deployment_name(model_name, role),
            "namespace": namespace,
            "labels": {**common_labels(run, "model-server"), LABEL_ROLE: role},
            "annotations": {f"{GROUP}/requested-by-run": run},
        },
        "spec": {"role": role, "model": {"name": model_name, "version": version}},
    }
