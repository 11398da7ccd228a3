"""The node stand-in: plays the kubelet for selected pods on the test control plane.

No kubelet runs in the cluster test layer, so pods the Job controller creates stay Pending.
This harness watches pods that match a label selector and, for each one, runs its first
container's ``command`` + ``args`` as a local process with the container's environment
(plain values, ``fieldRef``, ConfigMap and Secret references), then writes the pod's status
back through the API server: ``Running`` while the process runs, then ``Succeeded`` or
``Failed`` with the container's terminated state, exit code and termination message. The Job
controller then marks the Job Complete or Failed by itself.

What is simulated, and how:
- The container image is not pulled or run: the command runs in this test environment
  (``python``/``python3`` map to the test interpreter), in a scratch working directory.
- The termination message is redirected: the process is told (``CLAIMOPS_TERMINATION_MESSAGE_PATH``)
  to write to a scratch file instead of the pod's ``terminationMessagePath``; the harness reads
  it back like the kubelet would, including ``FallbackToLogsOnError``.
- Pods are not bound to a node; a deleted pod's process is killed.
- Images a test lists in :attr:`NodeStandIn.missing_images` "cannot be pulled": such a pod is
  not run; it stays ``Pending`` with its container waiting in ``ErrImagePull``, as on a node
  whose registry does not have the image.
- Logs are kept per pod and are available from :meth:`NodeStandIn.logs`.
- Networking: a pod that declares container ports gets a free local port, passed in
  ``CLAIMOPS_PORT``; its ``readinessProbe`` (httpGet) is polled on that port and the pod turns
  Ready when it answers, so Deployments roll out as on a node. Cluster DNS is simulated by
  rewriting ``http://<service>.<namespace>.svc[.cluster.local]:<port>`` in a pod's args and env
  to the local port of a Ready pod behind that Service.

What this stand-in cannot show is checked on a real kubelet by the e2e layer (`tests/e2e`, on
the kind cluster `make up` makes): the images themselves (contents, the ci-tests stage's pytest
and ruff inside the stage image), security contexts enforced at run time (non-root uids,
read-only root file systems), real image pull failures, probes, Services and CoreDNS, volumes,
pod logs through the pods/log API, the chart's own RBAC and both chart profiles.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from claimops_stages.contract import TERMINATION_MESSAGE_PATH_ENV
from tests.harness.control_plane import free_port

log = logging.getLogger("node-standin")

#: The client's models type every field as optional; the stand-in reads pods the API server
#: has already validated, so it treats them as plain objects.
Pod = Any

#: The kubelet keeps at most this much of a termination message.
MAX_TERMINATION_MESSAGE = 4096
#: FallbackToLogsOnError uses the last 80 lines or 2 KiB of the log, whichever is smaller.
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
PYTHON_COMMANDS = {"python", "python3"}
#: Where a pod's server is told to listen (the stage image's servers read it).
PORT_ENV = "CLAIMOPS_PORT"
SERVICE_URL = re.compile(
    r"http://(?P<service>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"\.svc(\.cluster\.local)?(:(?P<port>\d+))?"
)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PodRun:
    """One pod the stand-in runs."""

    namespace: str
    name: str
    uid: str
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: The local port the pod's server listens on (pods that declare container ports).
    port: int | None = None
    ready: bool = False
    deleted: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def log_path(self) -> Path:
        return self.workdir / "log"

    @property
    def termination_path(self) -> Path:
        return self.workdir / "termination-log"


class NodeStandIn:
    """Runs selected pods as local processes and reports their status to the API server."""

    def __init__(
        self,
        api_client: client.ApiClient,
        label_selector: str,
        *,
        extra_env: Mapping[str, str] | None = None,
        env_override: Callable[[dict[str, Any], dict[str, str]], dict[str, str]] | None = None,
        workdir: Path | None = None,
        instant: Callable[[dict[str, Any]], tuple[int, str]] | None = None,
    ) -> None:
        self.core: Any = client.CoreV1Api(api_client)
        self.label_selector = label_selector
        self.extra_env = dict(extra_env or {})
        # Lets a test adapt a pod's environment to the local machine (e.g. service URLs).
        self.env_override = env_override
        # Benchmarks of the control loop: finish each pod at once with (exit code, termination
        # message) from this function instead of running its command.
        self.instant = instant
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="claimops-node-"))
        self.runs: dict[str, PodRun] = {}
        #: Images whose pods are left waiting in ErrImagePull instead of being run.
        self.missing_images: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> NodeStandIn:
        self._thread = threading.Thread(target=self._watch_loop, name="node-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            runs = list(self.runs.values())
        for run in runs:
            self._kill(run)
        if self._thread:
            self._thread.join(timeout=15)

    def __enter__(self) -> NodeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queries for tests --

    def logs(self, namespace: str, pod: str) -> str:
        with self._lock:
            run = next((r for r in self.runs.values() if r.namespace == namespace and r.name == pod), None)
        if run is None or not run.log_path.exists():
            return ""
        return run.log_path.read_text(errors="replace")

    def pods_run(self, namespace: str | None = None) -> list[str]:
        with self._lock:
            return [r.name for r in self.runs.values() if namespace is None or r.namespace == namespace]

    # -- the watch --

    def _watch_loop(self) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listing: Any = self.core.list_pod_for_all_namespaces(label_selector=self.label_selector)
                    resource_version = listing.metadata.resource_version
                    for pod in listing.items:
                        self._observe(pod, deleted=False)
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    label_selector=self.label_selector,
                    resource_version=resource_version,
                    timeout_seconds=2,  # short, so stop() is honoured quickly
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    pod = event["object"]
                    resource_version = pod.metadata.resource_version
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._observe(pod, deleted=event["type"] == "DELETED")
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:  # resource version too old: list again
                    resource_version = None
                    continue
                if not self._stop.is_set():
                    log.warning("watch failed: %s", exc)
                    self._stop.wait(0.5)
            except Exception as exc:  # the API server may be stopping; keep the loop alive
                if not self._stop.is_set():
                    log.warning("watch error: %s", exc)
                    self._stop.wait(0.5)

    def _observe(self, pod: Pod, *, deleted: bool) -> None:
        uid = pod.metadata.uid
        with self._lock:
            run = self.runs.get(uid)
        if deleted or pod.metadata.deletion_timestamp:
            if run is not None:
                run.deleted = True
                self._kill(run)
            return
        if run is not None or (pod.status and pod.status.phase in ("Succeeded", "Failed")):
            return
        run = PodRun(
            pod.metadata.namespace,
            pod.metadata.name,
            uid,
            self.workdir / uid,
            labels=dict(pod.metadata.labels or {}),
        )
        run.workdir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.runs[uid] = run
        if pod.spec.containers[0].image in self.missing_images:
            self._cannot_pull(pod, run)
            return
        threading.Thread(target=self._run_pod, args=(pod, run), name=f"pod-{run.name}", daemon=True).start()

    # -- running one pod --

    def _run_pod(self, pod: Pod, run: PodRun) -> None:
        container = pod.spec.containers[0]
        started = _now()
        if self.instant is not None:
            code, message = self.instant(pod.to_dict())
            self._finish(
                pod, run, container.name, code, "Completed" if code == 0 else "Error", message, started
            )
            return
        try:
            argv = self._argv(container)
            env = self._env(pod, container)
        except (ValueError, ApiException) as exc:
            self._finish(pod, run, container.name, 128, "ContainerCannotRun", str(exc), started)
            return
        probe = container.readiness_probe.http_get if container.readiness_probe else None
        if probe is None:
            run.ready = True  # no readiness probe: Ready once running, as on a node
        running = {"running": {"startedAt": started}}
        self._patch_status(
            pod,
            {
                "phase": "Running",
                "startTime": started,
                "podIP": "127.0.0.1",
                "conditions": [
                    {"type": "Ready", "status": str(run.ready), "lastTransitionTime": started},
                    {"type": "ContainersReady", "status": str(run.ready), "lastTransitionTime": started},
                ],
                "containerStatuses": [self._container_status(container, running, ready=run.ready)],
            },
        )
        with run.log_path.open("wb") as out:
            try:
                run.process = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=run.workdir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as exc:
                self._finish(pod, run, container.name, 127, "ContainerCannotRun", str(exc), started)
                return
            if run.deleted:
                self._kill(run)
            if probe is not None and run.port is not None:
                threading.Thread(
                    target=self._probe_until_ready,
                    args=(pod, run, container, str(probe.path or "/"), running),
                    name=f"probe-{run.name}",
                    daemon=True,
                ).start()
            code = run.process.wait()
        run.exit_code = code if code >= 0 else 128 - code  # a signal n reads as 128+n, like a kubelet
        if run.deleted:
            run.done.set()
            return
        message = self._termination_message(container, run)
        self._finish(
            pod, run, container.name, run.exit_code, "Completed" if code == 0 else "Error", message, started
        )

    def _cannot_pull(self, pod: Pod, run: PodRun) -> None:
        """What a kubelet reports for an image its registry does not have (containerd's words)."""
        container = pod.spec.containers[0]
        image = container.image
        message = (
            f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
            f"{image}: not found"
        )
        waiting = {"waiting": {"reason": "ErrImagePull", "message": message}}
        self._patch_status(
            pod,
            {
                "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": _now()}],
                "containerStatuses": [self._container_status(container, waiting)],
            },
        )
        run.done.set()

    def _probe_until_ready(
        self, pod: Pod, run: PodRun, container: Any, path: str, running: dict[str, Any]
    ) -> None:
        url = f"http://127.0.0.1:{run.port}{path}"
        while run.process is not None and run.process.poll() is None and not self._stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if 200 <= response.status < 400:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        else:
            return
        run.ready = True
        now = _now()
        self._patch_status(
            pod,
            {
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                ],
                "containerStatuses": [self._container_status(container, running, ready=True)],
            },
        )

    def _argv(self, container: Any) -> list[str]:
        argv = list(container.command or []) + list(container.args or [])
        if not container.command:
            raise ValueError(
                f"container {container.name!r} has no command: the node stand-in cannot run an image's entrypoint"
            )
        if argv[0] in PYTHON_COMMANDS:
            argv[0] = sys.executable
        return [self.resolve_services(arg) for arg in argv]

    def _env(self, pod: Pod, container: Any) -> dict[str, str]:
        env: dict[str, str] = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "HOSTNAME": pod.metadata.name,
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        }
        env.update(self.extra_env)
        for source in container.env_from or []:
            if source.config_map_ref:
                cm = self.core.read_namespaced_config_map(source.config_map_ref.name, pod.metadata.namespace)
                env.update({(source.prefix or "") + k: v for k, v in (cm.data or {}).items()})
            if source.secret_ref:
                secret = self.core.read_namespaced_secret(source.secret_ref.name, pod.metadata.namespace)
                env.update(
                    {
                        (source.prefix or "") + k: base64.b64decode(v).decode()
                        for k, v in (secret.data or {}).items()
                    }
                )
        for var in container.env or []:
            env[var.name] = self._env_value(pod, var)
        env[TERMINATION_MESSAGE_PATH_ENV] = str(self.workdir / pod.metadata.uid / "termination-log")
        if container.ports:
            run = self.runs[pod.metadata.uid]
            run.port = free_port()
            env[PORT_ENV] = str(run.port)
        env = {k: self.resolve_services(v) for k, v in env.items()}
        if self.env_override:
            env = self.env_override(pod.to_dict(), env)
        return env

    def resolve_services(self, text: str) -> str:
        """Rewrite in-cluster Service URLs to the local port of a Ready pod behind them."""
        return SERVICE_URL.sub(self._local_url, text)

    def _local_url(self, match: re.Match[str]) -> str:
        service, namespace = match.group("service"), match.group("namespace")
        try:
            selector = self.core.read_namespaced_service(service, namespace).spec.selector or {}
        except ApiException:
            return match.group(0)
        with self._lock:
            backends = [
                r
                for r in self.runs.values()
                if r.namespace == namespace
                and r.ready
                and r.port is not None
                and not r.deleted
                and r.process is not None
                and r.process.poll() is None
                and all(r.labels.get(k) == v for k, v in selector.items())
            ]
        if not backends:
            return match.group(0)
        return f"http://127.0.0.1:{backends[-1].port}"

    def _env_value(self, pod: Pod, var: Any) -> str:
        if var.value_from is None:
            return str(var.value or "")
        source = var.value_from
        if source.field_ref:
            path = source.field_ref.field_path
            fields = {
                "metadata.name": pod.metadata.name,
                "metadata.namespace": pod.metadata.namespace,
                "metadata.uid": pod.metadata.uid,
                "spec.serviceAccountName": pod.spec.service_account_name or "",
                "spec.nodeName": "node-standin",
                "status.podIP": "127.0.0.1",
            }
            if path.startswith("metadata.labels['"):
                return str((pod.metadata.labels or {}).get(path[len("metadata.labels['") : -2], ""))
            if path.startswith("metadata.annotations['"):
                return str((pod.metadata.annotations or {}).get(path[len("metadata.annotations['") : -2], ""))
            if path not in fields:
                raise ValueError(f"env {var.name}: fieldRef {path} is not supported by the node stand-in")
            return fields[path]
        if source.secret_key_ref:
            ref = source.secret_key_ref
            secret = self.core.read_namespaced_secret(ref.name, pod.metadata.namespace)
            if ref.key not in (secret.data or {}):
                raise ValueError(f"env {var.name}: key {ref.key!r} not in Secret {ref.name!r}")
            return base64.b64decode(secret.data[ref.key]).decode()
        if source.config_map_key_ref:
            ref = source.config_map_key_ref
            cm = self.core.read_namespaced_config_map(ref.name, pod.metadata.namespace)
            if ref.key not in (cm.data or {}):
                raise ValueError(f"env {var.name}: key {ref.key!r} not in ConfigMap {ref.name!r}")
            return str(cm.data[ref.key])
        raise ValueError(f"env {var.name}: this valueFrom is not supported by the node stand-in")

    def _termination_message(self, container: Any, run: PodRun) -> str:
        message = ""
        if run.termination_path.exists():
            message = run.termination_path.read_bytes()[:MAX_TERMINATION_MESSAGE].decode(errors="replace")
        if not message and run.exit_code and container.termination_message_policy == "FallbackToLogsOnError":
            lines = run.log_path.read_bytes().splitlines()[-FALLBACK_LOG_LINES:]
            message = b"\n".join(lines)[-FALLBACK_LOG_BYTES:].decode(errors="replace")
        return message

    def _container_status(self, container: Any, state: dict[str, Any], ready: bool = False) -> dict[str, Any]:
        return {
            "name": container.name,
            "image": container.image,
            "imageID": "",
            "ready": ready,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
        }

    def _finish(
        self,
        pod: Pod,
        run: PodRun,
        container_name: str,
        exit_code: int,
        reason: str,
        message: str,
        started: str,
    ) -> None:
        container = next(c for c in pod.spec.containers if c.name == container_name)
        terminated = {
            "exitCode": exit_code,
            "reason": reason,
            "message": message,
            "startedAt": started,
            "finishedAt": _now(),
        }
        self._patch_status(
            pod,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": _now()}],
                "containerStatuses": [self._container_status(container, {"terminated": terminated})],
            },
        )
        run.exit_code = exit_code
        run.done.set()

    def _patch_status(self, pod: Pod, status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(
                pod.metadata.name, pod.metadata.namespace, {"status": status}
            )
        except ApiException as exc:
            if exc.status != 404:  # a pod deleted meanwhile needs no status
                log.warning("could not update pod %s/%s: %s", pod.metadata.namespace, pod.metadata.name, exc)

    def _kill(self, run: PodRun) -> None:
        if run.process is not None and run.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.process.pid, signal.SIGKILL)
