"""Manifests of the children a PipelineRun owns: stage Jobs and ModelDeployments.

Pure functions from plain data to plain dicts (like Tekton's reconciler `resources/`
package), so they are tested without a cluster. The reconcilers add the owner reference
(`kopf.append_owner_reference`) before creating a child.
"""

from __future__ import annotations

from typing import Any

from claimops_stages.api_names import (
    API_VERSION,
    LABEL_ATTEMPT,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_MODEL_DEPLOYMENT,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_STAGE,
    MANAGED_BY,
    MODEL_DEPLOYMENT,
    PART_OF,
    RELEASE,
    REQUESTED_BY_RUN,
    RESTART_TOKEN,
    SPEC_HASH,
)
from claimops_stages.contract import (
    DEFAULT_TERMINATION_MESSAGE_PATH,
    TERMINATION_MESSAGE_PATH_ENV,
    StageInputs,
)

from .config import OperatorConfig

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


def _app_labels(app: str, component: str) -> dict[str, str]:
    """The app.kubernetes.io labels every object ClaimOps creates carries."""
    return {
        LABEL_NAME: app,
        LABEL_PART_OF: PART_OF,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: component,
    }


def common_labels(run: str, component: str) -> dict[str, str]:
    return {**_app_labels("claimops", component), LABEL_RUN: run}


def pod_env(config: OperatorConfig, own: dict[str, str]) -> list[dict[str, Any]]:
    """Environment of every pod running the stage image: MLflow, a writable home, the
    configured extras and Secret references, then the pod's own variables."""
    env: list[dict[str, Any]] = [
        {"name": "MLFLOW_TRACKING_URI", "value": config.mlflow_tracking_uri},
        # Libraries that cache to $HOME (matplotlib, numba) need a writable home.
        {"name": "HOME", "value": "/tmp"},
        {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
    ]
    env += [{"name": k, "value": v} for k, v in sorted({**config.stage_env, **own}.items())]
    env += [
        {"name": ref.env, "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}}
        for ref in config.mlflow_secret_env
    ]
    return env


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
    image: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that runs one attempt of one stage (in `image`, else the operator's)."""
    labels = {**common_labels(run, "stage"), LABEL_STAGE: stage, LABEL_ATTEMPT: str(attempt)}
    env = pod_env(
        config,
        {
            TERMINATION_MESSAGE_PATH_ENV: DEFAULT_TERMINATION_MESSAGE_PATH,
            "CLAIMOPS_PIPELINE_RUN": run,
            "CLAIMOPS_STAGE_ATTEMPT": str(attempt),
        },
    )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [
            {
                "name": "stage",
                "image": image or config.stage_image,
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
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def model_deployment_name(model_name: str, role: str) -> str:
    return f"{model_name}-{role}"[:50].rstrip("-")


def model_deployment(
    *, run: str, namespace: str, role: str, model_name: str, version: str, release: str = ""
) -> dict[str, Any]:
    """The ModelDeployment that serves `version` in `role` (staging, shadow or production);
    `release` is a promotion's summary (JSON), kept as an annotation for its history."""
    annotations = {REQUESTED_BY_RUN: run, **({RELEASE: release} if release else {})}
    return {
        "apiVersion": API_VERSION,
        "kind": MODEL_DEPLOYMENT.kind,
        "metadata": {
            "name": model_deployment_name(model_name, role),
            "namespace": namespace,
            "labels": {**common_labels(run, "model-server"), LABEL_ROLE: role},
            "annotations": annotations,
        },
        "spec": {"role": role, "model": {"name": model_name, "version": version}},
    }


MODEL_SERVER_PORT = 8080


def model_server_labels(mdep_name: str, role: str) -> dict[str, str]:
    return {
        **_app_labels("claimops-model-server", "model-server"),
        LABEL_INSTANCE: mdep_name,
        LABEL_MODEL_DEPLOYMENT: mdep_name,
        LABEL_ROLE: role,
    }


def model_server_selector(mdep_name: str) -> dict[str, str]:
    return {LABEL_NAME: "claimops-model-server", LABEL_MODEL_DEPLOYMENT: mdep_name}


def model_server_deployment(
    *,
    mdep: dict[str, Any],
    version: str | None,
    alias: str | None,
    restart_token: str,
    spec_hash: str,
    config: OperatorConfig,
) -> dict[str, Any]:
    """The Deployment of the model server a ModelDeployment asks for."""
    meta, spec = mdep["metadata"], mdep["spec"]
    name, role = meta["name"], spec["role"]
    args = ["--model-name", spec["model"]["name"]]
    args += ["--model-version", version] if version else ["--model-alias", str(alias)]
    ab = spec.get("abTest")
    if ab:
        args += ["--ab-challenger-version", str(ab["challengerVersion"])]
        args += ["--ab-traffic-percent", str(ab["trafficPercent"])]
    labels = model_server_labels(name, role)
    probe_port: dict[str, Any] = {"port": "http"}
    resources = spec.get("resources") or {
        "requests": {"cpu": "100m", "memory": "384Mi"},
        "limits": {"memory": "1Gi"},
    }
    env = pod_env(config, {"CLAIMOPS_PORT": str(MODEL_SERVER_PORT)})
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [
            {
                "name": "model-server",
                "image": spec.get("image") or config.stage_image,
                "imagePullPolicy": config.image_pull_policy,
                "command": ["python", "-m", "claimops_stages.serving"],
                "args": args,
                "env": env,
                "ports": [{"name": "http", "containerPort": MODEL_SERVER_PORT}],
                # Loading a model from MLflow takes seconds; traffic only once it is loaded.
                "startupProbe": {
                    "httpGet": {"path": "/health", **probe_port},
                    "periodSeconds": 2,
                    "failureThreshold": 60,
                },
                "readinessProbe": {"httpGet": {"path": "/ready", **probe_port}, "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/health", **probe_port}, "periodSeconds": 10},
                "resources": resources,
                "securityContext": CONTAINER_SECURITY_CONTEXT,
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {SPEC_HASH: spec_hash},
        },
        "spec": {
            "replicas": int(spec.get("replicas", 1)),
            "selector": {"matchLabels": model_server_selector(name)},
            # Keep serving during a rollout: a new replica must be ready before an old one goes.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": labels, "annotations": {RESTART_TOKEN: restart_token}},
                "spec": pod_spec,
            },
        },
    }


def model_server_service(mdep: dict[str, Any]) -> dict[str, Any]:
    meta = mdep["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": model_server_labels(meta["name"], mdep["spec"]["role"]),
        },
        "spec": {
            "selector": model_server_selector(meta["name"]),
            "ports": [{"name": "http", "port": MODEL_SERVER_PORT, "targetPort": "http"}],
        },
    }


def rollback_job(
    *, mdep_name: str, namespace: str, job_name: str, inputs: StageInputs, config: OperatorConfig
) -> dict[str, Any]:
    """The Job of the `rollback` stage for a ModelDeployment (moves the champion alias back)."""
    job = stage_job(
        run=mdep_name,
        namespace=namespace,
        stage="rollback",
        attempt=1,
        job_name=job_name,
        inputs=inputs,
        deadline_seconds=600,
        config=config,
    )
    # Owned by the ModelDeployment, not by a PipelineRun: relabel so the right controller hears it.
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        del labels[LABEL_RUN]
        labels[LABEL_MODEL_DEPLOYMENT] = mdep_name
    return job
