"""The ClaimOps operator as a real process (`python -m claimops_operator`) against the test
control plane, so tests can watch it work, SIGKILL it and start it again."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.control_plane import free_port
from tests.harness.mlflow_server import ServiceOwner, ServiceProcess, http_ok


@dataclass
class OperatorProcess(ServiceOwner):
    kubeconfig: Path
    namespace: str
    mlflow_tracking_uri: str
    workdir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_port)
    service: ServiceProcess | None = field(default=None, init=False)
    starts: int = field(default=0, init=False)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60) -> OperatorProcess:
        self.starts += 1
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "CLAIMOPS_NAMESPACES": self.namespace,
            "CLAIMOPS_MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "CLAIMOPS_METRICS_PORT": str(self.metrics_port),
            "CLAIMOPS_HEALTH_PORT": "0",
            **self.extra_env,
        }
        log = self.workdir / f"operator-{self.starts}.log"
        self.service = ServiceProcess(
            "claimops operator", [sys.executable, "-m", "claimops_operator"], log, env
        )
        self.service.start()
        self.service.wait_until(lambda: http_ok(self.metrics_url), timeout)
        return self

    def kill(self) -> None:
        """SIGKILL the whole operator process group: no cleanup handlers run."""
        if self.service is not None and self.service.process is not None:
            os.killpg(self.service.process.pid, signal.SIGKILL)
            self.service.process.wait()
            self.service = None

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("operator-*.log")))
