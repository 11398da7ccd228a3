"""Fixtures shared by every test layer.

The cluster layer's fixtures start a real control plane once per session
(:mod:`tests.harness.control_plane`), play the node for pods labelled
``app.kubernetes.io/part-of=claimops`` (:mod:`tests.harness.node_standin`), install
ClaimOps' CRDs, start a real `mlflow server` and run the operator as a real process.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from claimops_stages.api_names import LABEL_PART_OF, PART_OF, RESOURCES
from tests.harness import approvals, xdist_order
from tests.harness.control_plane import REPO_ROOT, ControlPlane, ControlPlaneError
from tests.harness.layer_timings import LayerTimings
from tests.harness.mlflow_server import MlflowServer, running_mlflow
from tests.harness.node_standin import NodeStandIn
from tests.harness.operator_process import OperatorProcess

#: Pods the node stand-in runs: everything ClaimOps starts carries this label.
STANDIN_SELECTOR = f"{LABEL_PART_OF}={PART_OF}"

_layer_timings = LayerTimings()


def pytest_runtest_logstart(nodeid: str) -> None:
    _layer_timings.started(nodeid)


def pytest_runtest_logfinish(nodeid: str) -> None:
    _layer_timings.finished(nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _layer_timings.reported(report.nodeid, report.duration, report.outcome)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: see tests/harness/xdist_order.py
        xdist_order.longest_first(items)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> xdist_order.LayerScheduling:
    return xdist_order.make_scheduler(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Under pytest-xdist the controller sees every test's start and end; a worker only its own.
    if not hasattr(session.config, "workerinput"):
        _layer_timings.write()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    try:
        plane = ControlPlane.start(tmp_path_factory.mktemp("control-plane"))
    except ControlPlaneError as exc:
        # Not a skip: a cluster test that cannot run is a failure the reader must see.
        pytest.fail(str(exc), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def plain_namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security `restricted`, deleted after the test (for tests
    that install the chart themselves or check the CRD schema alone)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl(
        "label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(
    control_plane: ControlPlane, claimops_crds: tuple[str, ...], plain_namespace: str
) -> Iterator[str]:
    """A plain namespace with the chart's approvals admission policies bound to it, as a
    `helm install` there would have them."""
    policies = approvals.install(control_plane, plain_namespace)
    try:
        yield plain_namespace
    finally:
        approvals.uninstall(control_plane, policies)


@pytest.fixture(scope="session")
def node_standin(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeStandIn]:
    standin = NodeStandIn(
        control_plane.api_client(), STANDIN_SELECTOR, workdir=Path(tmp_path_factory.mktemp("node"))
    )
    with standin:
        yield standin


CRD_NAMES = tuple(r.crd_name for r in RESOURCES)


@pytest.fixture(scope="session")
def claimops_crds(control_plane: ControlPlane) -> tuple[str, ...]:
    control_plane.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    # Polled rather than `kubectl wait`, and read as JSON rather than through a jsonpath filter:
    # a CRD read before the API server wrote any condition makes both `kubectl wait
    # --for=condition=...` and a `[?(@.type==...)]` filter fail instead of waiting (a busy
    # machine, as on a cold CI run, makes that window long enough to hit).
    deadline = time.monotonic() + 60
    pending = list(CRD_NAMES)
    while pending:
        crd = json.loads(control_plane.kubectl("get", f"crd/{pending[0]}", "-o", "json").stdout)
        conditions = crd.get("status", {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            pending.pop(0)
        elif time.monotonic() > deadline:
            pytest.fail(f"CRD {pending[0]} not Established within 60 s", pytrace=False)
        else:
            time.sleep(0.2)
    return CRD_NAMES


@pytest.fixture(scope="session")
def cluster_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    workdir = tmp_path_factory.mktemp("cluster-mlflow")
    with running_mlflow(f"sqlite:///{workdir / 'mlflow.db'}", str(workdir / "artifacts"), workdir) as server:
        yield server


@pytest.fixture
def fresh_mlflow(tmp_path: Path) -> Iterator[MlflowServer]:
    """An `mlflow server` of the test's own, for tests that count registered versions."""
    with running_mlflow(
        f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"), tmp_path
    ) as server:
        yield server


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(
    control_plane: ControlPlane,
    claimops_crds: tuple[str, ...],
    cluster_mlflow: MlflowServer,
    tmp_path: Path,
) -> Iterator[OperatorFactory]:
    """Start the operator for a namespace; every operator started is stopped after the test."""
    started: list[OperatorProcess] = []

    def start(namespace: str, **extra_env: str) -> OperatorProcess:
        operator = OperatorProcess(
            control_plane.kubeconfig,
            namespace,
            cluster_mlflow.url,
            # One directory per process: two replicas of one namespace keep separate logs.
            tmp_path / f"operator-{namespace}-{len(started)}",
            extra_env,
        )
        operator.workdir.mkdir(parents=True, exist_ok=True)
        started.append(operator.start())
        return operator

    yield start
    for operator in started:
        operator.stop()
