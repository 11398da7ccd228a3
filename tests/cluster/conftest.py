"""Fixtures of the cluster layer: ClaimOps' CRDs installed, a real `mlflow server`, and the
operator as a real process watching the test's namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.control_plane import REPO_ROOT, ControlPlane
from tests.harness.mlflow_server import MlflowServer, running_mlflow
from tests.harness.operator_process import OperatorProcess

CRD_NAMES = ("pipelineruns.claimops.io", "modeldeployments.claimops.io")


@pytest.fixture(scope="session")
def claimops_crds(control_plane: ControlPlane) -> tuple[str, ...]:
    control_plane.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    for name in CRD_NAMES:
        control_plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    return CRD_NAMES


@pytest.fixture(scope="session")
def cluster_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    workdir = tmp_path_factory.mktemp("cluster-mlflow")
    with running_mlflow(f"sqlite:///{workdir / 'mlflow.db'}", str(workdir / "artifacts"), workdir) as server:
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
            tmp_path / f"operator-{namespace}",
            extra_env,
        )
        operator.workdir.mkdir(parents=True, exist_ok=True)
        started.append(operator.start())
        return operator

    yield start
    for operator in started:
        operator.stop()
