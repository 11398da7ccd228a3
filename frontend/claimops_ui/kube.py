"""The UI's narrow gateway to the Kubernetes API.

Reads use the UI's own identity (its ServiceAccount): PipelineRuns and ModelDeployments come
from an informer-style cache (one list + watch per kind, kept current by a thread), so pages
render without API calls and every change is pushed to open pages. Jobs, pods, Events and the
failure-defaults ConfigMap are read on demand.

Writes are made *as the signed-in user*: a second client sends ``Impersonate-User`` and
``Impersonate-Group`` headers, so RBAC and admission see that user (and the UI's
ServiceAccount only needs the ``impersonate`` verb for the configured users and group).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from claimops_stages.api_names import (
    GROUP,
    LABEL_JOB_NAME,
    MODELDEPLOYMENTS,
    PIPELINERUNS,
    VERSION,
)
from claimops_stages.contract import FailureMode

from .errors import Conflict, Forbidden, InvalidInput, NotFound, UiError, Unavailable

log = logging.getLogger("claimops.ui.kube")

FIELD_MANAGER = "claimops-ui"
#: Watches end after this long and are restarted from the last resourceVersion (keeps them
#: healthy behind proxies that drop idle connections).
WATCH_SECONDS = 240


def load_configuration(kubeconfig: str | None) -> client.Configuration:
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = 16
    return configuration


def _api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or f"HTTP {exc.status}")


def translate(exc: Exception, what: str) -> UiError:
    """An API server (or connection) error as the UI's exception, keeping the server's words."""
    if isinstance(exc, ApiException):
        message = f"{what}: {_api_message(exc)}"
        if exc.status == 404:
            return NotFound(message)
        if exc.status in (401, 403):
            return Forbidden(message)
        if exc.status == 409:
            return Conflict(message)
        if exc.status in (400, 422):
            return InvalidInput(message)
        if exc.status == 429 or (exc.status or 0) >= 500 or exc.status == 0:
            return Unavailable(message)
        return InvalidInput(message)
    return Unavailable(f"{what}: Kubernetes API unreachable ({type(exc).__name__}: {exc})")


_API_ERRORS = (ApiException, HTTPError, OSError)


# --------------------------------------------------------------------------------------------
# Informer: list + watch one kind into memory


Listener = Callable[[str, str, dict[str, Any]], None]


class Informer:
    """Keeps every object of one custom resource kind in one namespace in memory."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str, plural: str) -> None:
        self.api = api
        self.namespace = namespace
        self.plural = plural
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._synced = threading.Event()
        #: Set after the first list attempt, whatever its outcome (start-up waits for it).
        self._attempted = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self._loop, name=f"informer-{self.plural}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait_synced(self, timeout: float) -> bool:
        """Wait for the first list; returns early (False) when it failed."""
        self._attempted.wait(timeout)
        return self._synced.is_set()

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(name)

    def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        name = str(obj.get("metadata", {}).get("name", ""))
        for listener in self._listeners:
            try:
                listener(self.plural, kind, obj)
            except Exception:  # a broken subscriber must not stop the informer
                log.exception("informer listener failed for %s %s", self.plural, name)

    def _relist(self) -> str:
        listing: Any = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, self.plural)
        fresh = {o["metadata"]["name"]: o for o in listing.get("items", [])}
        with self._lock:
            gone = [o for n, o in self._objects.items() if n not in fresh]
            self._objects = fresh
        for obj in gone:
            self._emit("DELETED", obj)
        for obj in fresh.values():
            self._emit("MODIFIED", obj)
        self._synced.set()
        self._attempted.set()
        self.last_error = None
        return str(listing.get("metadata", {}).get("resourceVersion", ""))

    def _loop(self) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                stream = watch.Watch().stream(
                    self.api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    self.plural,
                    resource_version=resource_version,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    obj = event["object"]
                    kind = event["type"]
                    if kind == "ERROR":
                        raise ApiException(status=int(obj.get("code", 500)), reason=obj.get("message"))
                    resource_version = str(obj.get("metadata", {}).get("resourceVersion", resource_version))
                    if kind == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    with self._lock:
                        if kind == "DELETED":
                            self._objects.pop(name, None)
                        else:
                            self._objects[name] = obj
                    self._emit(kind, obj)
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if self._stop.is_set():
                    return
                if exc.status == 410:  # too old: list again
                    resource_version = None
                    continue
                self.last_error = f"{self.plural}: {_api_message(exc)}"
                self._attempted.set()
                log.warning("watch of %s failed: %s", self.plural, self.last_error)
                resource_version = None
                self._stop.wait(2.0)
            except Exception as exc:  # connection lost: list again after a pause
                if self._stop.is_set():
                    return
                self.last_error = f"{self.plural}: {type(exc).__name__}: {exc}"
                self._attempted.set()
                log.warning("watch of %s failed: %s", self.plural, self.last_error)
                resource_version = None
                self._stop.wait(2.0)


# --------------------------------------------------------------------------------------------
# Logs


class LogSource(Protocol):
    """Where a pod's log comes from. In a cluster: the pods/log API (kubelet). In the test
    layer there is no kubelet, so tests plug in a source that reads the node stand-in."""

    def read(self, namespace: str, pod: str) -> str | None:
        """The pod's log, or None when the pod (or its log) no longer exists."""
        ...


class KubeLogSource:
    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core

    def read(self, namespace: str, pod: str) -> str | None:
        try:
            text = self.core.read_namespaced_pod_log(pod, namespace, tail_lines=2000)
        except ApiException as exc:
            if exc.status in (400, 404):
                return None
            raise translate(exc, f"log of pod {pod}") from exc
        return str(text)


# --------------------------------------------------------------------------------------------
# The gateway


class KubeGateway:
    def __init__(
        self,
        configuration: client.Configuration,
        namespace: str,
        *,
        impersonate_group: str,
        failure_configmap: str,
        log_source: LogSource | None = None,
    ) -> None:
        self.configuration = configuration
        self.namespace = namespace
        self.impersonate_group = impersonate_group
        self.failure_configmap = failure_configmap
        self.reader = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.reader)
        self.core = client.CoreV1Api(self.reader)
        self.batch = client.BatchV1Api(self.reader)
        self.runs = Informer(self.custom, namespace, PIPELINERUNS)
        self.deployments = Informer(self.custom, namespace, MODELDEPLOYMENTS)
        self.log_source: LogSource = log_source or KubeLogSource(self.core)
        self._writers: dict[str, client.ApiClient] = {}
        self._writers_lock = threading.Lock()

    def start(self) -> KubeGateway:
        self.runs.start()
        self.deployments.start()
        return self

    def stop(self) -> None:
        self.runs.stop()
        self.deployments.stop()

    # -- identity --

    def writer(self, user: str) -> client.ApiClient:
        """An API client that acts as `user` in the impersonation group (one per user, pooled)."""
        with self._writers_lock:
            api = self._writers.get(user)
            if api is None:
                api = client.ApiClient(self.configuration)
                api.set_default_header("Impersonate-User", user)
                api.set_default_header("Impersonate-Group", self.impersonate_group)
                self._writers[user] = api
            return api

    # -- reads (cache) --

    def list_runs(self) -> list[dict[str, Any]]:
        return self.runs.items()

    def get_run(self, name: str) -> dict[str, Any]:
        run = self.runs.get(name)
        if run is None:
            run = self._fetch(PIPELINERUNS, name)
        return run

    def list_deployments(self) -> list[dict[str, Any]]:
        return self.deployments.items()

    def deployment_for_role(self, role: str) -> dict[str, Any] | None:
        matches = [d for d in self.deployments.items() if (d.get("spec") or {}).get("role") == role]
        return sorted(matches, key=lambda d: d["metadata"]["name"])[0] if matches else None

    def _fetch(self, plural: str, name: str) -> dict[str, Any]:
        try:
            obj: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        except _API_ERRORS as exc:
            raise translate(exc, f"{plural}/{name}") from exc
        return obj

    # -- reads (on demand) --

    def get_job(self, name: str) -> dict[str, Any] | None:
        try:
            job = self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise translate(exc, f"job {name}") from exc
        except _API_ERRORS as exc:
            raise translate(exc, f"job {name}") from exc
        result: dict[str, Any] = self.reader.sanitize_for_serialization(job)
        return result

    def pods_of_job(self, job: str) -> list[dict[str, Any]]:
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{LABEL_JOB_NAME}={job}")
        except _API_ERRORS as exc:
            raise translate(exc, f"pods of job {job}") from exc
        items: list[dict[str, Any]] = [self.reader.sanitize_for_serialization(p) for p in pods.items]
        return sorted(items, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    def pod_log(self, pod: str) -> str | None:
        try:
            return self.log_source.read(self.namespace, pod)
        except UiError:
            raise
        except _API_ERRORS as exc:
            raise translate(exc, f"log of pod {pod}") from exc

    def failure_defaults(self) -> dict[str, bool]:
        """Failure modes new runs get (ConfigMap data: one key per mode, "true"/"false")."""
        data: dict[str, str] = {}
        try:
            cm = self.core.read_namespaced_config_map(self.failure_configmap, self.namespace)
            data = dict(cm.data or {})
        except ApiException as exc:
            if exc.status != 404:
                raise translate(exc, f"configmap {self.failure_configmap}") from exc
        except _API_ERRORS as exc:
            raise translate(exc, f"configmap {self.failure_configmap}") from exc
        return {m.value: data.get(m.value, "false").strip().lower() == "true" for m in FailureMode}

    # -- writes, as the signed-in user --

    def create_run(self, user: str, body: dict[str, Any]) -> dict[str, Any]:
        api = client.CustomObjectsApi(self.writer(user))
        try:
            created: Any = api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PIPELINERUNS, body, field_manager=FIELD_MANAGER
            )
        except _API_ERRORS as exc:
            raise translate(exc, f"create PipelineRun as {user}") from exc
        return created

    def patch_run(self, user: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._patch(user, PIPELINERUNS, name, patch)

    def patch_deployment(self, user: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._patch(user, MODELDEPLOYMENTS, name, patch)

    def _patch(self, user: str, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        api = client.CustomObjectsApi(self.writer(user))
        try:
            patched: Any = api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                plural,
                name,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
            )
        except _API_ERRORS as exc:
            raise translate(exc, f"patch {plural}/{name} as {user}") from exc
        return patched

    def set_failure_default(self, user: str, mode: str, enabled: bool) -> dict[str, bool]:
        """Patch one toggle of the failure-defaults ConfigMap as `user`. The chart creates the
        ConfigMap and grants the operators group get/patch/update on that one name only, so
        the UI never creates it: a missing ConfigMap is a NotFound that says how to restore it."""
        core = client.CoreV1Api(self.writer(user))
        patch = {"data": {mode: "true" if enabled else "false"}}
        what = f"configmap {self.failure_configmap} as {user}"
        try:
            core.patch_namespaced_config_map(
                self.failure_configmap,
                self.namespace,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(
                    f"ConfigMap {self.failure_configmap} does not exist in namespace {self.namespace}; "
                    "the Helm chart creates it (`helm upgrade` restores it), the UI only edits it"
                ) from exc
            raise translate(exc, what) from exc
        except _API_ERRORS as exc:
            raise translate(exc, what) from exc
        return self.failure_defaults()

    # -- health --

    def health(self) -> dict[str, Any]:
        return {
            "runsSynced": self.runs.synced,
            "deploymentsSynced": self.deployments.synced,
            "errors": [e for e in (self.runs.last_error, self.deployments.last_error) if e],
        }
