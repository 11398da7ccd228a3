"""Operator configuration, read once from the environment (the chart sets these variables).

Every setting has a sane default so `kopf run -m claimops_operator.handlers` works on a laptop.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A setting has a value the operator cannot use; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


@dataclass(frozen=True)
class SecretRef:
    """An environment variable of stage pods taken from a key of a Secret."""

    env: str
    secret: str
    key: str


@dataclass(frozen=True)
class OperatorConfig:
    #: Namespaces watched; empty means the whole cluster.
    namespaces: tuple[str, ...] = ()
    #: Image of stage Jobs and model servers.
    stage_image: str = "claimops/stages:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    #: MLflow, as the stage pods reach it. The operator itself never calls MLflow.
    mlflow_tracking_uri: str = "http://mlflow:5000"
    #: Extra environment of stage pods from Secrets (e.g. MLFLOW_TRACKING_PASSWORD, AWS keys).
    mlflow_secret_env: tuple[SecretRef, ...] = ()
    #: Plain extra environment of stage pods (e.g. MLFLOW_S3_ENDPOINT_URL).
    stage_env: Mapping[str, str] = field(default_factory=dict)
    #: ServiceAccount of stage pods; empty uses the namespace's default. Stage pods never
    #: call the Kubernetes API, so no token is mounted either way.
    stage_service_account: str = ""
    #: Stage container resources.
    stage_cpu_request: str = "250m"
    stage_memory_request: str = "512Mi"
    stage_memory_limit: str = "2Gi"
    #: How many PipelineRuns are reconciled at once (each reconcile is a few API calls).
    max_concurrent_reconciles: int = 20
    #: When false, runs end after deploy-staging (for clusters that cannot run model servers).
    serving_enabled: bool = True
    metrics_port: int = 8080
    #: Liveness endpoint (/healthz); 0 turns it off.
    health_port: int = 8081
    #: Stage Jobs running at once over all runs; runs over it wait in phase Queued.
    max_concurrent_stage_jobs: int = 4
    #: Leader election: the Lease's name (empty: no election, this process reconciles at
    #: once), its namespace, and this replica's identity (the pod name).
    leader_lease: str = ""
    leader_lease_namespace: str = ""
    identity: str = field(default_factory=socket.gethostname)
    lease_duration_seconds: int = 9
    lease_renew_deadline_seconds: int = 6
    lease_retry_period_seconds: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        secret_env: list[SecretRef] = []
        # CLAIMOPS_STAGE_SECRET_ENV="MLFLOW_TRACKING_PASSWORD=mlflow-auth:password,AWS_SECRET_ACCESS_KEY=s3:secret"
        for item in filter(None, (env.get("CLAIMOPS_STAGE_SECRET_ENV") or "").split(",")):
            try:
                name, ref = item.split("=", 1)
                secret, key = ref.split(":", 1)
            except ValueError as exc:
                raise ConfigError(
                    f"CLAIMOPS_STAGE_SECRET_ENV item {item!r} must look like ENV=secret-name:key"
                ) from exc
            secret_env.append(SecretRef(name.strip(), secret.strip(), key.strip()))
        stage_env: dict[str, str] = {}
        for item in filter(None, (env.get("CLAIMOPS_STAGE_ENV") or "").split(",")):
            if "=" not in item:
                raise ConfigError(f"CLAIMOPS_STAGE_ENV item {item!r} must look like NAME=value")
            name, value = item.split("=", 1)
            stage_env[name.strip()] = value.strip()
        namespaces = tuple(n.strip() for n in (env.get("CLAIMOPS_NAMESPACES") or "").split(",") if n.strip())
        lease = env.get("CLAIMOPS_LEADER_ELECTION_LEASE") or ""
        lease_namespace = env.get("CLAIMOPS_LEADER_ELECTION_NAMESPACE") or ""
        if lease and not lease_namespace:
            raise ConfigError(
                "CLAIMOPS_LEADER_ELECTION_LEASE is set but CLAIMOPS_LEADER_ELECTION_NAMESPACE is not "
                "(the namespace of the Lease, normally the operator pod's own)"
            )
        duration = _int(env, "CLAIMOPS_LEASE_DURATION_SECONDS", cls.lease_duration_seconds, minimum=3)
        renew = _int(
            env, "CLAIMOPS_LEASE_RENEW_DEADLINE_SECONDS", cls.lease_renew_deadline_seconds, minimum=2
        )
        retry = _int(env, "CLAIMOPS_LEASE_RETRY_PERIOD_SECONDS", cls.lease_retry_period_seconds, minimum=1)
        if not retry < renew < duration:
            raise ConfigError(
                "lease timings must satisfy CLAIMOPS_LEASE_RETRY_PERIOD_SECONDS < "
                f"CLAIMOPS_LEASE_RENEW_DEADLINE_SECONDS < CLAIMOPS_LEASE_DURATION_SECONDS, got {retry} < {renew} < {duration}"
            )
        return cls(
            namespaces=namespaces,
            stage_image=env.get("CLAIMOPS_STAGE_IMAGE") or cls.stage_image,
            image_pull_policy=env.get("CLAIMOPS_IMAGE_PULL_POLICY") or cls.image_pull_policy,
            mlflow_tracking_uri=env.get("CLAIMOPS_MLFLOW_TRACKING_URI") or cls.mlflow_tracking_uri,
            mlflow_secret_env=tuple(secret_env),
            stage_env=stage_env,
            stage_service_account=env.get("CLAIMOPS_STAGE_SERVICE_ACCOUNT") or cls.stage_service_account,
            max_concurrent_reconciles=_int(
                env, "CLAIMOPS_MAX_CONCURRENT_RECONCILES", cls.max_concurrent_reconciles, minimum=1
            ),
            serving_enabled=_bool(env, "CLAIMOPS_SERVING_ENABLED", cls.serving_enabled),
            metrics_port=_int(env, "CLAIMOPS_METRICS_PORT", cls.metrics_port),
            health_port=_int(env, "CLAIMOPS_HEALTH_PORT", cls.health_port),
            max_concurrent_stage_jobs=_int(
                env, "CLAIMOPS_MAX_CONCURRENT_STAGE_JOBS", cls.max_concurrent_stage_jobs, minimum=1
            ),
            leader_lease=lease,
            leader_lease_namespace=lease_namespace,
            identity=env.get("CLAIMOPS_POD_NAME") or socket.gethostname(),
            lease_duration_seconds=duration,
            lease_renew_deadline_seconds=renew,
            lease_retry_period_seconds=retry,
        )
