"""A real `mlflow server` on 127.0.0.1 for the service tests, plus the small process helper
the PostgreSQL and object-store harnesses share.

`mlflow server` (3.17) starts uvicorn, a job runner and huey consumers; stopping only the
parent leaves them running, so every service here starts in its own process group (session)
and the whole group is stopped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.chart import mlflow_server_command, uri_scheme
from tests.harness.control_plane import die_with_parent, free_port, http_ok, stop_process_group

__all__ = [
    "LocalHttpService",
    "MlflowServer",
    "ServiceError",
    "ServiceOwner",
    "ServiceProcess",
    "chart_server_argv",
    "http_ok",
    "running_mlflow",
]


class ServiceError(RuntimeError):
    """A service process could not be started or died."""


@dataclass
class ServiceProcess:
    """One service started in its own process group, its output in a log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    #: Run as this OS user (PostgreSQL refuses to run as root).
    user: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env is not None else None,
                start_new_session=True,
                preexec_fn=die_with_parent,  # no orphans in CI if the test process dies
                user=self.user,
                group=self.user,
                cwd=self.log_path.parent,
            )
        return self

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.2)
        raise ServiceError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            self.process = None


class ServiceOwner:
    """Mixin for a harness wrapper around the :class:`ServiceProcess` it started (`service`)."""

    service: ServiceProcess | None

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None


class LocalHttpService(ServiceOwner):
    """A :class:`ServiceOwner` whose service answers HTTP on 127.0.0.1:`port`."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def chart_server_argv(backend_store_uri: str, artifacts_destination: str, port: int) -> list[str]:
    """The chart's own `mlflow server` argument list (helm/claimops, the `embedded` profile
    for SQLite, else `external`) with the cluster-specific values replaced by local ones.

    The backend-store and artifact URIs must use the chart's schemes (SQLAlchemy driver
    included), so the service tests exercise the driver the installed product uses.
    """
    profile = "embedded" if uri_scheme(backend_store_uri).startswith("sqlite") else "external"
    command = mlflow_server_command(profile)
    # Flags whose chart values name the cluster (bind address, Service port, pod size, the
    # PostgreSQL Service and Secret, the MinIO bucket or the volume) get local values of the
    # same kind; every other flag of the chart's command is passed on unchanged.
    local = {
        "--host": "127.0.0.1",
        "--port": str(port),
        # One worker: on two cores more only compete with the tests for CPU.
        "--workers": "1",
        "--backend-store-uri": backend_store_uri,
        "--artifacts-destination": artifacts_destination,
    }
    args: list[str] = []
    for arg in command[2:]:
        flag, _, value = arg.partition("=")
        if flag in local:
            if flag in ("--backend-store-uri", "--artifacts-destination") and uri_scheme(value) != uri_scheme(
                local[flag]
            ):
                raise ServiceError(
                    f"the chart ({profile} profile) starts MLflow with {flag} scheme "
                    f"{uri_scheme(value)!r}, this harness with {uri_scheme(local[flag])!r}: use the chart's"
                )
            args.append(f"{flag}={local.pop(flag)}")
        elif "$(" in value:
            raise ServiceError(
                f"the chart's `mlflow server` flag {arg} needs the pod's env: give it a local value here"
            )
        else:
            args.append(arg)
    if local:
        raise ServiceError(f"the chart's `mlflow server` command lacks {sorted(local)}: {command}")
    return [sys.executable, "-m", "mlflow", "server", *args]


@dataclass
class MlflowServer(LocalHttpService):
    """`mlflow server` started with the chart's arguments (:func:`chart_server_argv`) on a
    local backend store and artifact destination."""

    backend_store_uri: str
    artifacts_destination: str
    workdir: Path
    #: Extra environment for the server (S3 endpoint and keys for an object-store destination).
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    service: ServiceProcess | None = field(default=None, init=False)

    def start(self, timeout: float = 90) -> MlflowServer:
        argv = chart_server_argv(self.backend_store_uri, self.artifacts_destination, self.port)
        # No job runner/huey consumers: the stages run no server-side jobs, and on two cores
        # they only compete with the tests for CPU.
        env = {**os.environ, **self.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.service = ServiceProcess("mlflow server", argv, self.workdir / "mlflow-server.log", env).start()
        self.service.wait_until(lambda: http_ok(self.url + "/health"), timeout)
        return self

    def client_env(self) -> dict[str, str]:
        """What a stage process needs to talk to this server (only the tracking URI: the
        artifacts go through the server's proxy, so stages never hold storage keys)."""
        return {"MLFLOW_TRACKING_URI": self.url}


@contextlib.contextmanager
def running_mlflow(
    backend_store_uri: str, artifacts_destination: str, workdir: Path, env: Mapping[str, str] | None = None
) -> Iterator[MlflowServer]:
    server = MlflowServer(backend_store_uri, artifacts_destination, workdir, dict(env or {}))
    try:
        yield server.start()
    finally:
        server.stop()
