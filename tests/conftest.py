"""Fixtures shared by every test layer.

The cluster layer's fixtures start a real control plane once per session
(:mod:`tests.harness.control_plane`) and play the node for pods labelled
``app.kubernetes.io/part-of=claimops`` (:mod:`tests.harness.node_standin`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.control_plane import ControlPlane, ControlPlaneError
from tests.harness.node_standin import NodeStandIn

#: Pods the node stand-in runs: everything ClaimOps starts carries this label.
STANDIN_SELECTOR = "app.kubernetes.io/part-of=claimops"


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
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security `restricted`, deleted after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl(
        "label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def node_standin(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeStandIn]:
    standin = NodeStandIn(
        control_plane.api_client(), STANDIN_SELECTOR, workdir=Path(tmp_path_factory.mktemp("node"))
    )
    with standin:
        yield standin
