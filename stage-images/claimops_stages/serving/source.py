"""Where models come from: the MLflow Model Registry (the one I/O boundary of the server).

A narrow interface, so tests swap one real registry (an `mlflow server` on 127.0.0.1) for
another, never for a mock.
"""

from __future__ import annotations

import tempfile
from typing import Any, Protocol


class ModelSource(Protocol):
    def resolve(self, name: str, version: str | None, alias: str | None) -> str:
        """The version number to serve (an alias is resolved once, at load)."""
        ...

    def load(self, name: str, version: str) -> Any:
        """The fitted scikit-learn pipeline of that version."""
        ...


class MlflowRegistry:
    """Models from the registry at ``$MLFLOW_TRACKING_URI`` (or `tracking_uri`)."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        from claimops_stages import tracking

        # Fail fast and retry in our own loop (the app's loader), not for minutes in the client.
        tracking.configure_client()
        self.tracking_uri = tracking_uri or tracking.tracking_uri()

    def resolve(self, name: str, version: str | None, alias: str | None) -> str:
        if version is not None:
            return str(version)
        from mlflow.tracking import MlflowClient

        return str(MlflowClient(self.tracking_uri).get_model_version_by_alias(name, str(alias)).version)

    def load(self, name: str, version: str) -> Any:
        import mlflow
        import mlflow.sklearn

        mlflow.set_tracking_uri(self.tracking_uri)
        # The artifacts go to $TMPDIR (/tmp: the pod's only writable path, often memory-backed)
        # and are deleted once the pipeline is in memory.
        with tempfile.TemporaryDirectory(prefix="claimops-model-") as directory:
            return mlflow.sklearn.load_model(f"models:/{name}/{version}", dst_path=directory)
