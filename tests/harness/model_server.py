"""Real model-server processes for the service, cluster and bench layers.

* :func:`register_model` trains a small settlement pipeline with the training code and
  registers it in an MLflow server exactly as the full-train stage logs it (skops).
* :class:`ModelServer` starts ``python -m claimops_stages.serving`` on a free 127.0.0.1 port
  in its own process group and waits for ``/ready``; :func:`running_model_server` wraps it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.control_plane import REPO_ROOT, free_port
from tests.harness.mlflow_server import LocalHttpService, ServiceProcess

SERVING_MODULE = "claimops_stages.serving"


def register_model(
    tracking_uri: str,
    name: str,
    rows: int = 5000,
    seed: int = 42,
    n_estimators: int = 50,
    max_depth: int = 12,
    alias: str | None = None,
) -> tuple[str, Any]:
    """Train on `rows` synthetic claims, register the pipeline as a new version of `name`
    (optionally pointing `alias` at it); returns (version, fitted pipeline)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    from claimops_stages.claims import generate_claims
    from claimops_stages.training import SKOPS_TRUSTED_TYPES, TrainingConfig, train

    outcome = train(
        generate_claims(rows, seed=seed),
        TrainingConfig(n_estimators=n_estimators, max_depth=max_depth, seed=seed, n_jobs=-1),
    )
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("model-server-tests")
    sample = outcome.x_test.head(100)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            outcome.pipeline,
            name="model",
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            signature=infer_signature(sample, outcome.pipeline.predict(sample)),
            input_example=outcome.x_test.head(3),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    if alias is not None:
        MlflowClient(tracking_uri).set_registered_model_alias(name, alias, version)
    return version, outcome.pipeline


def http_json(
    method: str, url: str, body: Any = None, raw: bytes | None = None, timeout: float = 30.0
) -> tuple[int, Any]:
    """One request; returns (status, parsed JSON body or text). 4xx/5xx are returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


@dataclass
class ModelServer(LocalHttpService):
    """One `python -m claimops_stages.serving` process."""

    tracking_uri: str
    model_name: str
    workdir: Path
    version: str | None = None
    alias: str | None = None
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    service: ServiceProcess | None = field(default=None, init=False)

    def argv(self) -> list[str]:
        which = ["--model-version", self.version] if self.version else ["--model-alias", str(self.alias)]
        return [
            sys.executable, "-m", SERVING_MODULE, "--model-name", self.model_name, *which,
            "--host", "127.0.0.1", "--port", str(self.port), *self.args,
        ]  # fmt: skip

    def start(self, timeout: float = 120, wait_ready: bool = True) -> ModelServer:
        python_path = os.pathsep.join(
            [str(REPO_ROOT / "stage-images"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
        )
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "PYTHONPATH": python_path,
            **self.env,
        }
        label = f"model server {self.model_name} {self.version or '@' + str(self.alias)}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.service = ServiceProcess(
            label, self.argv(), self.workdir / f"model-server-{self.port}.log", env
        ).start()
        self.service.wait_until(self.healthy, timeout)
        if wait_ready:
            self.service.wait_until(self.is_ready, timeout)
        return self

    def healthy(self) -> bool:
        with contextlib.suppress(OSError):
            return http_json("GET", self.url + "/health", timeout=2)[0] == 200
        return False

    def is_ready(self) -> bool:
        with contextlib.suppress(OSError):
            return http_json("GET", self.url + "/ready", timeout=2)[0] == 200
        return False

    def ready(self) -> tuple[int, Any]:
        return http_json("GET", self.url + "/ready")

    def predict(self, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        return http_json("POST", self.url + "/predict", body, raw)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
            return str(response.read().decode())

    def log_tail(self) -> str:
        return self.service.log_tail() if self.service else ""


@contextlib.contextmanager
def running_model_server(
    tracking_uri: str,
    model_name: str,
    workdir: Path,
    version: str | None = None,
    alias: str | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[ModelServer]:
    server = ModelServer(tracking_uri, model_name, workdir, version, alias, args, dict(env or {}))
    try:
        yield server.start()
    finally:
        server.stop()
