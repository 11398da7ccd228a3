"""UI configuration, read once from the environment (the Helm chart sets these variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8000
DEFAULT_GROUP = "claimops:operators"
DEFAULT_FAILURE_CONFIGMAP = "claimops-failure-defaults"


class ConfigError(ValueError):
    """A setting the UI cannot use; the message names the variable."""


@dataclass(frozen=True)
class UiConfig:
    namespace: str = "default"
    port: int = DEFAULT_PORT
    host: str = "0.0.0.0"
    #: None: in-cluster config, else the kubeconfig file ($KUBECONFIG).
    kubeconfig: str | None = None
    mlflow_tracking_uri: str = "http://mlflow:5000"
    #: The MLflow UI as users reach it (links on the pages); defaults to the tracking URI.
    mlflow_public_url: str = ""
    htpasswd_file: Path | None = None
    session_key_file: Path | None = None
    impersonate_group: str = DEFAULT_GROUP
    failure_defaults_configmap: str = DEFAULT_FAILURE_CONFIGMAP
    #: Set the session cookie's Secure flag (behind TLS). Off for plain-HTTP labs and tests.
    secure_cookies: bool = False
    #: Model servers: path of the prediction endpoint on a ModelDeployment's status.url.
    predict_path: str = "/predict"

    @property
    def mlflow_link(self) -> str:
        return (self.mlflow_public_url or self.mlflow_tracking_uri).rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> UiConfig:
        env = os.environ if env is None else env
        raw_port = env.get("CLAIMOPS_UI_PORT") or str(DEFAULT_PORT)
        try:
            port = int(raw_port)
        except ValueError as exc:
            raise ConfigError(f"CLAIMOPS_UI_PORT={raw_port!r} is not an integer") from exc
        if not 0 < port < 65536:
            raise ConfigError(f"CLAIMOPS_UI_PORT={port} is not a TCP port")
        htpasswd = env.get("CLAIMOPS_UI_HTPASSWD_FILE")
        session_key = env.get("CLAIMOPS_UI_SESSION_KEY_FILE")
        return cls(
            namespace=env.get("CLAIMOPS_NAMESPACE") or "default",
            port=port,
            host=env.get("CLAIMOPS_UI_HOST") or "0.0.0.0",
            kubeconfig=env.get("KUBECONFIG") or None,
            mlflow_tracking_uri=env.get("CLAIMOPS_MLFLOW_TRACKING_URI") or cls.mlflow_tracking_uri,
            mlflow_public_url=env.get("CLAIMOPS_MLFLOW_PUBLIC_URL") or "",
            htpasswd_file=Path(htpasswd) if htpasswd else None,
            session_key_file=Path(session_key) if session_key else None,
            impersonate_group=env.get("CLAIMOPS_UI_IMPERSONATE_GROUP") or DEFAULT_GROUP,
            failure_defaults_configmap=env.get("CLAIMOPS_FAILURE_DEFAULTS_CONFIGMAP")
            or DEFAULT_FAILURE_CONFIGMAP,
            secure_cookies=(env.get("CLAIMOPS_UI_SECURE_COOKIES") or "").lower() in ("1", "true", "yes"),
            predict_path=env.get("CLAIMOPS_MODEL_SERVER_PREDICT_PATH") or "/predict",
        )
