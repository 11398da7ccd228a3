"""The UI's narrow gateway to the MLflow tracking server: its REST API over httpx.

The UI only reads MLflow (runs, metrics, tags, registry aliases, artifacts). It does not
import the mlflow package: the REST API is stable and the UI image stays small.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import InvalidInput, NotFound, Unavailable

CHAMPION = "champion"
CHALLENGER = "challenger"
#: MLflow run ids are 32 hex characters.
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
#: Artifacts the UI shows inline; anything else is linked to the MLflow UI instead.
INLINE_TYPES = {".png": "image/png", ".json": "application/json", ".txt": "text/plain", ".log": "text/plain"}
MAX_ARTIFACT_BYTES = 5 * 1024 * 1024


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise InvalidInput(f"{run_id!r} is not an MLflow run id (32 hexadecimal characters)")
    return run_id


def _metrics(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: float(m["value"]) for m in run.get("data", {}).get("metrics", []) or []}


def _kv(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {i["key"]: str(i.get("value", "")) for i in items or []}


def flatten_run(run: dict[str, Any]) -> dict[str, Any]:
    """A run as flat, UI-friendly JSON: info plus metrics/params/tags as dicts."""
    info = run.get("info", {})
    data = run.get("data", {})
    tags = _kv(data.get("tags"))
    return {
        "runId": info.get("run_id"),
        "runName": info.get("run_name") or tags.get("mlflow.runName", ""),
        "experimentId": info.get("experiment_id"),
        "status": info.get("status"),
        "startTime": info.get("start_time"),
        "endTime": info.get("end_time"),
        "artifactUri": info.get("artifact_uri"),
        "metrics": _metrics(run),
        "params": _kv(data.get("params")),
        "tags": {k: v for k, v in tags.items() if not k.startswith("mlflow.")},
    }


@dataclass
class MlflowGateway:
    tracking_uri: str
    public_url: str
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.tracking_uri.rstrip("/"), timeout=self.timeout)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"MLflow at {self.tracking_uri} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code == 404 or (
            response.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in response.text
        ):
            raise NotFound(f"MLflow: {self._message(response)}")
        if response.status_code >= 500:
            raise Unavailable(f"MLflow answered {response.status_code}: {self._message(response)}")
        if response.status_code >= 400:
            raise InvalidInput(f"MLflow: {self._message(response)}")
        body: dict[str, Any] = response.json() if response.content else {}
        return body

    @staticmethod
    def _message(response: httpx.Response) -> str:
        try:
            return str(response.json().get("message") or response.text[:300])
        except ValueError:
            return response.text[:300]

    # -- links --

    def run_link(self, experiment_id: str | None, run_id: str) -> str:
        return f"{self.public_url}/#/experiments/{experiment_id or 0}/runs/{run_id}"

    def model_link(self, name: str, version: str | None = None) -> str:
        return f"{self.public_url}/#/models/{name}" + (f"/versions/{version}" if version else "")

    # -- reads --

    def health(self) -> bool:
        try:
            return self.http.get("/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def experiment_ids(self) -> list[str]:
        body = self._call("POST", "/api/2.0/mlflow/experiments/search", json={"max_results": 100})
        return [str(e["experiment_id"]) for e in body.get("experiments", [])]

    def search_runs(self, max_results: int = 100, filter_string: str = "") -> list[dict[str, Any]]:
        ids = self.experiment_ids()
        if not ids:
            return []
        payload: dict[str, Any] = {
            "experiment_ids": ids,
            "max_results": max_results,
            "order_by": ["attributes.start_time DESC"],
        }
        if filter_string:
            payload["filter"] = filter_string
        body = self._call("POST", "/api/2.0/mlflow/runs/search", json=payload)
        return [flatten_run(r) for r in body.get("runs", [])]

    def runs_by_id(self, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Many runs in one search (the model trend's training and evaluation runs)."""
        wanted = sorted({check_run_id(r) for r in run_ids if r})
        found: dict[str, dict[str, Any]] = {}
        ids = self.experiment_ids() if wanted else []
        for first in range(0, len(wanted), 100):
            chunk = wanted[first : first + 100]
            listed = ", ".join(f"'{r}'" for r in chunk)
            body = self._call(
                "POST",
                "/api/2.0/mlflow/runs/search",
                json={
                    "experiment_ids": ids,
                    "max_results": len(chunk),
                    "filter": f"attributes.run_id IN ({listed})",
                },
            )
            found.update({str(r["runId"]): r for r in map(flatten_run, body.get("runs", []))})
        return found

    def get_run(self, run_id: str) -> dict[str, Any]:
        body = self._call("GET", "/api/2.0/mlflow/runs/get", params={"run_id": check_run_id(run_id)})
        return flatten_run(body["run"])

    def alias(self, model: str, alias: str) -> dict[str, Any] | None:
        """The model version an alias points at (with its training run's metrics), or None."""
        try:
            body = self._call(
                "GET", "/api/2.0/mlflow/registered-models/alias", params={"name": model, "alias": alias}
            )
        except (NotFound, InvalidInput):
            return None
        version = body.get("model_version") or {}
        result = {
            "alias": alias,
            "model": model,
            "version": str(version.get("version", "")),
            "runId": version.get("run_id"),
            "tags": _kv(version.get("tags")),
            "createdAt": version.get("creation_timestamp"),
            "metrics": {},
            "link": self.model_link(model, str(version.get("version", ""))),
        }
        if version.get("run_id"):
            try:
                run = self.get_run(str(version["run_id"]))
                result["metrics"] = run["metrics"]
                result["runLink"] = self.run_link(run["experimentId"], run["runId"])
            except (NotFound, InvalidInput):
                pass
        return result

    def model_versions(self, model: str) -> list[dict[str, Any]]:
        try:
            body = self._call(
                "GET",
                "/api/2.0/mlflow/model-versions/search",
                params={"filter": f"name='{model}'", "max_results": 200},
            )
        except NotFound:
            return []
        # Search results leave aliases out; the registered model lists them.
        try:
            model_body = self._call("GET", "/api/2.0/mlflow/registered-models/get", params={"name": model})
            aliases = model_body.get("registered_model", {}).get("aliases", [])
        except NotFound:
            aliases = []
        by_version: dict[str, list[str]] = {}
        for item in aliases:
            by_version.setdefault(str(item.get("version")), []).append(str(item.get("alias")))
        versions = [
            {
                "version": str(v.get("version")),
                "runId": v.get("run_id"),
                "aliases": sorted(set(v.get("aliases", [])) | set(by_version.get(str(v.get("version")), []))),
                "tags": _kv(v.get("tags")),
                "createdAt": v.get("creation_timestamp"),
            }
            for v in body.get("model_versions", [])
        ]
        return sorted(versions, key=lambda v: int(v["version"] or 0), reverse=True)

    def list_artifacts(self, run_id: str, path: str = "") -> list[dict[str, Any]]:
        params = {"run_id": check_run_id(run_id)}
        if path:
            params["path"] = path
        body = self._call("GET", "/api/2.0/mlflow/artifacts/list", params=params)
        files: list[dict[str, Any]] = body.get("files", [])
        return files

    def all_artifacts(self, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """Every artifact file of a run (walks directories, breadth first)."""
        found: list[dict[str, Any]] = []
        queue = [""]
        while queue and len(found) < limit:
            for entry in self.list_artifacts(run_id, queue.pop(0)):
                if entry.get("is_dir"):
                    queue.append(entry["path"])
                else:
                    found.append(entry)
        return found

    def artifact(self, run_id: str, path: str) -> tuple[bytes, str]:
        """(content, media type) of an artifact the UI may show inline."""
        check_run_id(run_id)
        suffix = path[path.rfind(".") :].lower() if "." in path else ""
        if suffix not in INLINE_TYPES or ".." in path.split("/"):
            raise InvalidInput(f"artifact {path!r} cannot be shown here; open it in the MLflow UI")
        try:
            response = self.http.get("/get-artifact", params={"path": path, "run_uuid": run_id})
        except httpx.HTTPError as exc:
            raise Unavailable(f"MLflow unreachable: {exc}") from exc
        if response.status_code in (400, 404) or (
            response.status_code >= 500 and "does not exist" in response.text
        ):
            raise NotFound(f"artifact {path} of run {run_id} not found")
        if response.status_code >= 400:
            raise Unavailable(f"MLflow answered {response.status_code} for artifact {path}")
        if len(response.content) > MAX_ARTIFACT_BYTES:
            raise InvalidInput(f"artifact {path} is larger than {MAX_ARTIFACT_BYTES} bytes")
        return response.content, INLINE_TYPES[suffix]
