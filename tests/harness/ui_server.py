"""The ClaimOps UI for tests and benchmarks: uvicorn in a thread on a free port, acting with a
least-privilege ServiceAccount token (reads + impersonate only), users from an htpasswd file.

There is no kubelet on the test control plane, so the pods/log API cannot work: the UI is
given a log source that reads the node stand-in's captured pod logs instead (the UI's
`LogSource` interface; in a cluster it is `KubeLogSource`, the pods/log API).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import uvicorn
import yaml

from claimops_ui.app import create_app
from claimops_ui.config import UiConfig
from tests.harness import chart
from tests.harness.control_plane import ControlPlane, free_port
from tests.harness.node_standin import NodeStandIn

UI_SERVICE_ACCOUNT = "claimops-ui"


class StandInLogSource:
    """Pod logs from the node stand-in (the test layer's kubelet)."""

    def __init__(self, standin: NodeStandIn) -> None:
        self.standin = standin

    def read(self, namespace: str, pod: str) -> str | None:
        if pod not in self.standin.pods_run(namespace):
            return None
        return self.standin.logs(namespace, pod)


#: What the UI's part of the chart installs that the harness applies: its identity and RBAC
#: (ServiceAccount, reader Role, operators Role for the impersonated users, impersonator
#: ClusterRole) and the failure-defaults ConfigMap. Not its Deployment, Service or Secrets:
#: the harness runs the UI itself. Who may decide on a run is the chart's approvals component
#: (tests/harness/approvals.py), not the UI's.
UI_KINDS = (
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
)
#: A placeholder bcrypt hash for the chart's ui.extraUsers (the harness writes its own htpasswd).
_PLACEHOLDER_HASH = "$2y$04$" + "." * 53


def chart_values(users: list[str]) -> list[str]:
    """helm flags making `users` the chart's UI logins (the first one is its admin)."""
    extra = [{"username": u, "passwordHash": _PLACEHOLDER_HASH} for u in users[1:]]
    return ["--set", f"ui.admin.username={users[0]}", "--set-json", f"ui.extraUsers={json.dumps(extra)}"]


def rendered_ui(namespace: str, users: list[str]) -> list[dict[str, Any]]:
    """The UI's objects of the chart, rendered for `namespace` with `users` as its logins."""
    return chart.render(*chart_values(users), namespace=namespace)


def rbac_manifests(namespace: str, users: list[str]) -> list[dict[str, Any]]:
    """The UI's RBAC (plus its ConfigMap and admission policy) exactly as the chart installs it
    (`helm template`): the ServiceAccount reads and may impersonate only `users` and the
    operators group; that group may create/patch runs, patch deployments and edit the
    failure-defaults ConfigMap. The ServiceAccount itself can change nothing."""
    return [d for d in rendered_ui(namespace, users) if d["kind"] in UI_KINDS and chart.component(d) == "ui"]


def _ui_env(namespace: str, users: list[str]) -> dict[str, str]:
    ui = chart.container(rendered_ui(namespace, users), "ui", "ui")
    return {e["name"]: e["value"] for e in ui.get("env", []) if "value" in e}


def ui_kubeconfig(cp: ControlPlane, namespace: str, path: Path) -> Path:
    """A kubeconfig with a token of the UI's ServiceAccount (TokenRequest API)."""
    token = cp.kubectl("create", "token", UI_SERVICE_ACCOUNT, "-n", namespace, "--duration=4h").stdout.strip()
    admin = yaml.safe_load(cp.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": UI_SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {
                "name": "ui",
                "context": {"cluster": cluster["name"], "user": UI_SERVICE_ACCOUNT, "namespace": namespace},
            }
        ],
        "current-context": "ui",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def setup_ui_identity(cp: ControlPlane, namespace: str, users: list[str], workdir: Path) -> Path:
    """The chart's UI RBAC and failure-defaults ConfigMap applied in `namespace`, and a
    kubeconfig with the UI ServiceAccount's token."""
    objects = rbac_manifests(namespace, users)
    cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    return ui_kubeconfig(cp, namespace, workdir / "ui.kubeconfig")


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    # Cost 4 keeps sign-in fast in tests; the format is what `htpasswd -B` writes ($2y$).
    lines = [
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode().replace('$2b$', '$2y$', 1)}"
        for u, p in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class UiServer:
    config: UiConfig
    log_source: Any = None
    #: In-cluster Service URLs -> local ports (the node stand-in runs model servers locally).
    resolve_url: Any = None
    port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> UiServer:
        app = create_app(self.config, log_source=self.log_source, resolve_url=self.resolve_url)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                ws="websockets-sansio",
                timeout_graceful_shutdown=2,
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="claimops-ui", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the UI did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def ui_config(
    namespace: str, kubeconfig: Path, mlflow_url: str, workdir: Path, users: dict[str, str] | None
) -> UiConfig:
    """The UI's settings: the impersonation group and the failure-defaults ConfigMap as the
    chart's UI Deployment sets them; backends, users and the session key local."""
    htpasswd = write_htpasswd(workdir / "htpasswd", users) if users else None
    key = workdir / "session.key"
    key.write_text(secrets.token_urlsafe(32))
    env = _ui_env(namespace, list(users) if users else ["admin"])
    return UiConfig(
        namespace=namespace,
        kubeconfig=str(kubeconfig),
        mlflow_tracking_uri=mlflow_url,
        mlflow_public_url=mlflow_url,
        htpasswd_file=htpasswd,
        session_key_file=key,
        impersonate_group=env["CLAIMOPS_UI_IMPERSONATE_GROUP"],
        failure_defaults_configmap=env["CLAIMOPS_FAILURE_DEFAULTS_CONFIGMAP"],
    )
