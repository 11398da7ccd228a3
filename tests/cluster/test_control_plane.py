"""The cluster test bed is a real Kubernetes control plane, not a mock.

Each test shows one thing only a real API server (and controller manager) does: Pod Security
admission, structural-schema validation of custom resources, RBAC, and the Job controller
finishing Jobs whose pods the node stand-in runs.
"""

from __future__ import annotations

import json
import re
import socket
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness import control_plane as cp
from tests.harness.control_plane import ControlPlane, ControlPlaneError
from tests.harness.node_standin import NodeStandIn

pytestmark = pytest.mark.cluster

RESTRICTED_POD_SECURITY: dict[str, object] = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_SECURITY: dict[str, object] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def _pod(
    name: str, namespace: str, pod_security: dict[str, object], container_security: dict[str, object]
) -> str:
    container: dict[str, object] = {"name": "main", "image": "busybox:1.36"}
    if container_security:
        container["securityContext"] = container_security
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"securityContext": pod_security, "containers": [container]},
        }
    )


def _wait_for_default_service_account(control_plane: ControlPlane, namespace: str) -> None:
    deadline = time.monotonic() + 30
    while control_plane.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode != 0:
        assert time.monotonic() < deadline, "the controller manager did not create the default ServiceAccount"
        time.sleep(0.2)


def _compiled_module_version(executable: Path, module: str) -> str:
    """The version of `module` the Go linker recorded in `executable`'s build info (the
    `mod`/`dep` lines `go version -m` prints): what was compiled, not what was stamped."""
    found = re.search(
        rb"\n(?:mod|dep)\t" + re.escape(module.encode()) + rb"\t(v[^\t\n]+)", executable.read_bytes()
    )
    assert found, f"{executable} records no build of {module}"
    return found.group(1).decode()


def _running_executable(control_plane: ControlPlane, component: str) -> Path:
    process = next(c.process for c in control_plane.components if c.name == component)
    return Path(f"/proc/{process.pid}/exe")


def test_running_servers_are_built_from_the_pinned_releases(control_plane: ControlPlane) -> None:
    """The API server, etcd and kubectl that run are the releases versions.env pins.

    build.sh stamps `gitVersion` from versions.env, so /version alone would repeat the file.
    What can disagree with it: the k8s.io/kubernetes module compiled into the running
    kube-apiserver (from tests/cluster/kube/go.mod), and the version etcd reports from its
    own source (not stamped)."""
    pinned = cp.pinned_versions()
    served = json.loads(control_plane.kubectl("get", "--raw=/version").stdout)
    assert served["gitVersion"] == pinned["KUBERNETES_VERSION"]
    assert (served["major"], served["minor"]) == tuple(pinned["KUBERNETES_VERSION"][1:].split(".")[:2])
    apiserver = _running_executable(control_plane, "kube-apiserver")
    assert _compiled_module_version(apiserver, "k8s.io/kubernetes") == pinned["KUBERNETES_VERSION"]
    kubectl = json.loads(control_plane.kubectl("version", "--client", "-o", "json").stdout)
    assert kubectl["clientVersion"]["gitVersion"] == pinned["KUBERNETES_VERSION"]
    assert _compiled_module_version(cp.binary("kubectl"), "k8s.io/kubernetes") == pinned["KUBERNETES_VERSION"]

    with urllib.request.urlopen(f"http://127.0.0.1:{control_plane.etcd_port}/version", timeout=10) as answer:
        etcd = json.load(answer)
    assert "v" + etcd["etcdserver"] == pinned["ETCD_VERSION"]
    etcd_binary = _running_executable(control_plane, "etcd")
    assert _compiled_module_version(etcd_binary, "go.etcd.io/etcd/server/v3") == pinned["ETCD_VERSION"]


@pytest.mark.parametrize(
    ("pod_security", "container_security", "rejected_for"),
    [
        ({}, {"privileged": True}, "privileged"),
        ({"runAsUser": 0}, RESTRICTED_CONTAINER_SECURITY, "runAsNonRoot"),
        ({"runAsNonRoot": True}, RESTRICTED_CONTAINER_SECURITY, "seccompProfile"),
        (RESTRICTED_POD_SECURITY, {}, "allowPrivilegeEscalation"),
    ],
    ids=["privileged", "runs-as-root", "no-seccomp", "keeps-capabilities"],
)
def test_pod_security_restricted_rejects_unsafe_pods(
    control_plane: ControlPlane,
    namespace: str,
    pod_security: dict[str, object],
    container_security: dict[str, object],
    rejected_for: str,
) -> None:
    manifest = _pod("unsafe", namespace, pod_security, container_security)
    result = control_plane.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr
    assert rejected_for in result.stderr


def test_pod_security_restricted_admits_a_compliant_pod(control_plane: ControlPlane, namespace: str) -> None:
    manifest = _pod("compliant", namespace, RESTRICTED_POD_SECURITY, RESTRICTED_CONTAINER_SECURITY)
    _wait_for_default_service_account(control_plane, namespace)
    result = control_plane.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert result.returncode == 0, result.stderr


WIDGET_CRD = textwrap.dedent(
    """\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.testing.claimops.io}
    spec:
      group: testing.claimops.io
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget}
      versions:
      - name: v1
        served: true
        storage: true
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                required: [size]
                properties:
                  size: {type: integer, minimum: 1, maximum: 10}
                  colour: {type: string, enum: [red, blue]}
                x-kubernetes-validations:
                - rule: "self.size <= 5 || self.colour == 'blue'"
                  message: "a widget larger than 5 must be blue"
    """
)


@pytest.fixture(scope="module")
def widget_crd(control_plane: ControlPlane) -> str:
    control_plane.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.testing.claimops.io", "--timeout=30s"
    )
    return "widgets.testing.claimops.io"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"size": 11}, "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"),
        ({"size": "big"}, 'spec.size: Invalid value: "string": spec.size in body must be of type integer'),
        ({}, "spec.size: Required value"),
        ({"size": 2, "colour": "green"}, 'spec.colour: Unsupported value: "green"'),
        ({"size": 7, "colour": "red"}, "a widget larger than 5 must be blue"),
    ],
    ids=["above-maximum", "wrong-type", "missing-required", "not-in-enum", "cel-rule"],
)
def test_structural_schema_rejects_invalid_custom_resources(
    control_plane: ControlPlane, namespace: str, widget_crd: str, spec: dict[str, object], message: str
) -> None:
    obj = {"apiVersion": "testing.claimops.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}
    result = control_plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_structural_schema_rejects_unknown_fields_or_prunes_them(
    control_plane: ControlPlane, namespace: str, widget_crd: str
) -> None:
    obj = {
        "apiVersion": "testing.claimops.io/v1",
        "kind": "Widget",
        "metadata": {"name": "ok"},
        "spec": {"size": 7, "colour": "blue", "unknownField": 1},
    }
    strict = control_plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
    assert strict.returncode != 0
    assert 'unknown field "spec.unknownField"' in strict.stderr
    # Without strict field validation the server accepts the object and prunes the field.
    control_plane.kubectl("create", "--validate=ignore", "-n", namespace, "-f", "-", input=json.dumps(obj))
    stored = json.loads(control_plane.kubectl("get", "widget", "ok", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"] == {"size": 7, "colour": "blue"}


def test_rbac_denies_what_a_service_account_was_not_granted(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    control_plane.kubectl(
        "create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", namespace
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=pod-reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    who = f"--as=system:serviceaccount:{namespace}:reader"

    def can_i(*args: str) -> str:
        return control_plane.kubectl("auth", "can-i", *args, who, check=False).stdout.strip()

    assert can_i("list", "pods", "-n", namespace) == "yes"
    assert can_i("delete", "pods", "-n", namespace) == "no"
    assert can_i("list", "pods", "-n", "default") == "no"
    assert can_i("get", "secrets", "-n", namespace) == "no"
    # And the server enforces it on a real request, not only in can-i.
    denied = control_plane.kubectl("get", "secrets", "-n", namespace, who, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr


def _job(name: str, namespace: str, script: str) -> str:
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/part-of": "claimops"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "securityContext": RESTRICTED_POD_SECURITY,
                        "containers": [
                            {
                                "name": "main",
                                "image": "python:3.11-slim",
                                "command": ["python", "-c", script],
                                "env": [
                                    {"name": "GREETING", "value": "hello"},
                                    {
                                        "name": "POD_NAME",
                                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                    },
                                ],
                                "securityContext": RESTRICTED_CONTAINER_SECURITY,
                            }
                        ],
                    },
                },
            },
        }
    )


WRITE_MESSAGE = (
    "import os, sys; "
    "open(os.environ['CLAIMOPS_TERMINATION_MESSAGE_PATH'], 'w')"
    ".write(os.environ['GREETING'] + ' from ' + os.environ['POD_NAME']); "
    "print('working'); sys.exit({code})"
)


@pytest.mark.parametrize(
    ("exit_code", "condition", "phase", "reason"),
    [(0, "Complete", "Succeeded", "Completed"), (1, "Failed", "Failed", "Error")],
    ids=["exit-0-completes", "exit-1-fails"],
)
def test_job_controller_finishes_jobs_the_node_standin_runs(
    control_plane: ControlPlane,
    namespace: str,
    node_standin: NodeStandIn,
    exit_code: int,
    condition: str,
    phase: str,
    reason: str,
) -> None:
    _wait_for_default_service_account(control_plane, namespace)
    control_plane.kubectl(
        "create", "-f", "-", input=_job("greet", namespace, WRITE_MESSAGE.format(code=exit_code))
    )
    control_plane.kubectl(
        "wait", f"--for=condition={condition}", "job/greet", "-n", namespace, "--timeout=60s"
    )

    listing = control_plane.kubectl(
        "get", "pods", "-n", namespace, "-l", "job-name=greet", "-o", "json"
    ).stdout
    pods = json.loads(listing)["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == phase
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == exit_code
    assert terminated["reason"] == reason
    assert terminated["message"] == f"hello from {pod['metadata']['name']}"
    assert "working" in node_standin.logs(namespace, pod["metadata"]["name"])


def test_missing_binaries_name_the_build_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIMOPS_CACHE", str(tmp_path))
    with pytest.raises(ControlPlaneError, match="make cluster-binaries"):
        ControlPlane.start(tmp_path / "cp")


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    plane = ControlPlane.start(tmp_path / "cp")
    pids = [c.process.pid for c in plane.components]
    assert len(pids) == 3
    plane.stop()
    for pid in pids:
        assert _gone(pid), f"process {pid} survived stop()"
    with socket.socket() as probe:  # nothing listens on the API server's port any more
        assert probe.connect_ex(("127.0.0.1", plane.apiserver_port)) != 0


def test_a_readiness_probe_that_hangs_is_not_yet_ready_rather_than_an_error(tmp_path: Path) -> None:
    # An API server that accepted the connection but holds the request (one just starting on a
    # loaded machine) once failed every cluster test of a CI run: the probe's timeout escaped.
    plane = ControlPlane(workdir=tmp_path)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        plane.apiserver_port = silent.getsockname()[1]
        pki = cp._Pki.create()
        plane.kubeconfig.write_text(cp._kubeconfig(plane.server, pki.ca, "claimops-admin", pki.admin))
        seen = plane._apiserver_readiness()
    assert seen is not None
    assert "get --raw=/readyz" in seen


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
