"""The e2e layer: the real kind cluster that `make up` made, with our images built from our
Dockerfiles and the chart installed as users install it. Nothing here starts a stand-in: the
pods run in containers on a kubelet, the Services resolve through CoreDNS, logs come from the
pods/log API and every request goes through the chart's own RBAC.

Settings (environment, as `make up` takes them): KIND_CLUSTER, NAMESPACE, RELEASE.
Run with `make e2e` after `make up`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
UI_URL = "http://localhost:3001"
API_URL = "http://localhost:8000"
MLFLOW_URL = "http://localhost:5000"
MODEL = "claim-settlement"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fault experiments run last: every other e2e test assumes a healthy cluster, and a fault
    that outlives its experiment (a restarted node, a re-elected operator) must not turn
    their results into noise. The order within each group stays as collected."""
    chaos = [item for item in items if item.get_closest_marker("chaos") is not None]
    if chaos:
        items[:] = [item for item in items if item.get_closest_marker("chaos") is None] + chaos


@dataclass(frozen=True)
class KindCluster:
    kubectl_bin: str
    helm_bin: str
    context: str
    namespace: str
    release: str

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.kubectl_bin, "--context", self.context, "-n", self.namespace, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin, check=False)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{shlex.join(cmd[3:])} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def helm(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [self.helm_bin, "--kube-context", self.context, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"helm {shlex.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def shell(self, script: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """Run README commands as written: `kubectl` is this cluster's kubectl and context."""
        prelude = (
            f'kubectl() {{ {shlex.quote(self.kubectl_bin)} --context {shlex.quote(self.context)} "$@"; }}\n'
        )
        env = {**os.environ, "USER": os.environ.get("USER") or "e2e"}
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", prelude + script],
            capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False,
        )  # fmt: skip

    def secret(self, name: str, key: str) -> str:
        import base64

        data = self.get("secret", name)["data"]
        return base64.b64decode(data[key]).decode()

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any]:
        obj = self.get(kind, name)
        for cond in obj.get("status", {}).get("conditions", []):
            if cond["type"] == type_:
                return dict(cond)
        return {}

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float, every: float = 3) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")

    def run_in_cluster(self, name: str, image: str, command: list[str], timeout: float = 180) -> str:
        """A one-off restricted pod; returns its log once it has succeeded."""
        overrides = {
            "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": command,
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }],
            }
        }  # fmt: skip
        self.kubectl("delete", "pod", name, "--ignore-not-found", "--wait=true")
        self.kubectl(
            "run", name, f"--image={image}", "--restart=Never", f"--overrides={json.dumps(overrides)}"
        )
        try:
            phase = self.wait_for(
                f"pod {name} to finish",
                lambda: (
                    self.get("pod", name).get("status", {}).get("phase") in ("Succeeded", "Failed")
                    and self.get("pod", name)["status"]["phase"]
                ),
                timeout,
            )
            log = self.kubectl("logs", name).stdout
            assert phase == "Succeeded", f"pod {name} {phase}:\n{log}"
            return log
        finally:
            self.kubectl("delete", "pod", name, "--ignore-not-found", "--wait=false", check=False)


def _tools() -> dict[str, str]:
    done = subprocess.run(
        ["bash", str(REPO / "mk/kind/tools.sh")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"mk/kind/tools.sh failed:\n{done.stderr}", pytrace=False)
    return dict(item.split("=", 1) for item in done.stdout.split())


@pytest.fixture(scope="session")
def kind() -> KindCluster:
    tools = _tools()
    cluster = KindCluster(
        kubectl_bin=tools["KUBECTL"],
        helm_bin=tools["HELM"],
        context="kind-" + os.environ.get("KIND_CLUSTER", "claimops"),
        namespace=os.environ.get("NAMESPACE", "claimops"),
        release=os.environ.get("RELEASE", "claimops"),
    )
    probe = cluster.kubectl("get", "namespace", cluster.namespace, check=False, timeout=30)
    if probe.returncode != 0:
        # Not a skip: the e2e layer that cannot run is a failure the reader must see.
        pytest.fail(
            f"no kind cluster with ClaimOps installed ({probe.stderr.strip()}): run `make up` first",
            pytrace=False,
        )
    return cluster


@pytest.fixture(scope="session")
def release_values(kind: KindCluster) -> dict[str, Any]:
    """What `make up` installed (image tags, stand-in images): reused by the other profile."""
    return dict(
        json.loads(kind.helm("get", "values", kind.release, "-n", kind.namespace, "-o", "json").stdout)
    )


@pytest.fixture(scope="session")
def stage_image(kind: KindCluster, release_values: dict[str, Any]) -> str:
    image = release_values["stageImage"]
    return f"{image.get('repository', 'claimops/stages')}:{image['tag']}"


@pytest.fixture(scope="session")
def mlflow() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=MLFLOW_URL, timeout=30) as client:
        yield client


def champion_version(mlflow: httpx.Client) -> str | None:
    answer = mlflow.get(
        "/api/2.0/mlflow/registered-models/alias", params={"name": MODEL, "alias": "champion"}
    )
    # 404: no such model yet; 400 "alias ... not found": versions exist but none was promoted
    # (an earlier run stopped before promotion on this cluster).
    if answer.status_code == 404 or (answer.status_code == 400 and "not found" in answer.text):
        return None
    answer.raise_for_status()
    return str(answer.json()["model_version"]["version"])


def pipelinerun(name: str, sha: str, **spec: Any) -> str:
    """The example PipelineRun (manifests/examples/pipelinerun.yaml) under another name/commit."""
    import yaml

    doc = yaml.safe_load((REPO / "manifests/examples/pipelinerun.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["commit"]["sha"] = sha
    doc["spec"].update(spec)
    return str(yaml.safe_dump(doc))
