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
from tests.harness.control_plane import REPO_ROOT, ControlPlane, free_port
from tests.harness.node_standin import NodeStandIn

UI_SERVICE_ACCOUNT = "claimops-ui"
IMPERSONATE_GROUP = "claimops:operators"
APPROVAL_POLICY = REPO_ROOT / "manifests" / "ui" / "approval-identity-policy.yaml"


class StandInLogSource:
    """Pod logs from the node stand-in (the test layer's kubelet)."""

    def __init__(self, standin: NodeStandIn) -> None:
        self.standin = standin

    def read(self, namespace: str, pod: str) -> str | None:
        if pod not in self.standin.pods_run(namespace):
            return None
        return self.standin.logs(namespace, pod)


def rbac_manifests(namespace: str, users: list[str]) -> list[dict[str, Any]]:
    """The UI's RBAC, as the chart grants it: its ServiceAccount reads and may impersonate only
    `users` in the operators group; that group may create/patch runs, patch deployments and
    the failure-defaults ConfigMap. The ServiceAccount itself can change nothing."""
    reads = [
        {
            "apiGroups": ["claimops.io"],
            "resources": ["pipelineruns", "modeldeployments"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list"]},
        {
            "apiGroups": [""],
            "resources": ["pods", "pods/log", "events", "configmaps"],
            "verbs": ["get", "list"],
        },
    ]
    operators = [
        {
            "apiGroups": ["claimops.io"],
            "resources": ["pipelineruns"],
            "verbs": ["get", "list", "create", "patch"],
        },
        {"apiGroups": ["claimops.io"], "resources": ["modeldeployments"], "verbs": ["get", "list", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["claimops-failure-defaults"],
            "verbs": ["get", "patch"],
        },
    ]
    sa = {"kind": "ServiceAccount", "name": UI_SERVICE_ACCOUNT, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": UI_SERVICE_ACCOUNT, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "claimops-ui-read", "namespace": namespace}, "rules": reads},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "claimops-ui-read", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "claimops-ui-read"}, "subjects": [sa]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": f"claimops-ui-impersonate-{namespace}"},
         "rules": [
             {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": users},
             {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": [IMPERSONATE_GROUP]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": f"claimops-ui-impersonate-{namespace}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"claimops-ui-impersonate-{namespace}"}, "subjects": [sa]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "claimops-operators", "namespace": namespace}, "rules": operators},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "claimops-operators", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "claimops-operators"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": IMPERSONATE_GROUP}]},
    ]  # fmt: skip


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
    """RBAC, the approval-identity policy bound to `namespace`, and the UI's kubeconfig."""
    cp.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac_manifests(namespace, users)}),
    )
    cp.kubectl("apply", "-f", str(APPROVAL_POLICY))
    cp.kubectl("label", "namespace", namespace, "claimops.io/approval-identity=enforced", "--overwrite")
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
    htpasswd = write_htpasswd(workdir / "htpasswd", users) if users else None
    key = workdir / "session.key"
    key.write_text(secrets.token_urlsafe(32))
    return UiConfig(
        namespace=namespace,
        kubeconfig=str(kubeconfig),
        mlflow_tracking_uri=mlflow_url,
        mlflow_public_url=mlflow_url,
        htpasswd_file=htpasswd,
        session_key_file=key,
    )
