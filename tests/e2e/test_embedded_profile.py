"""The chart's other profile (values-embedded.yaml: SQLite and artifacts on one volume, no
PostgreSQL or MinIO) installed beside the default one, in a namespace of its own with an
operator that watches only that namespace, with the same images: pods Ready, `helm test`,
and a run's CI stages tracked in the embedded MLflow."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import REPO, KindCluster, pipelinerun

pytestmark = pytest.mark.e2e
NAMESPACE = "claimops-embedded"
RELEASE = "embedded"


@pytest.fixture(scope="module")
def embedded(kind: KindCluster, release_values: dict[str, Any]) -> Iterator[KindCluster]:
    other = dataclasses.replace(kind, namespace=NAMESPACE, release=RELEASE)
    kind.kubectl("create", "namespace", NAMESPACE, check=False)
    kind.kubectl(
        "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    tags = [
        f"stageImage.tag={release_values['stageImage']['tag']}",
        f"operator.image.tag={release_values['operator']['image']['tag']}",
        f"ui.image.tag={release_values['ui']['image']['tag']}",
        f"operator.watchNamespaces={{{NAMESPACE}}}",
    ]
    args = [f"--set={t}" for t in tags]
    try:
        kind.helm(
            "upgrade", "--install", RELEASE, str(REPO / "helm/claimops"), "-n", NAMESPACE,
            "-f", str(REPO / "helm/claimops/values-embedded.yaml"), *args, "--wait", "--timeout", "8m",
        )  # fmt: skip
        yield other
    finally:
        kind.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
        kind.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_embedded_pods_are_ready_without_postgresql_or_minio(embedded: KindCluster) -> None:
    pods = embedded.get("pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert {"operator", "ui", "mlflow"} <= components, components
    assert not {"postgresql", "minio"} & components, components
    for pod in pods:
        ready = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}.get("Ready")
        assert ready == "True", pod["metadata"]["name"]


def test_embedded_helm_test_passes(embedded: KindCluster) -> None:
    embedded.helm("test", RELEASE, "-n", NAMESPACE, "--logs", "--timeout", "5m")


def test_a_run_reaches_ci_passed_against_the_embedded_mlflow(embedded: KindCluster) -> None:
    name = "embedded-ci"
    manifest = pipelinerun(name, "e3b0c44" + "0" * 33, dataset={"rows": 3000, "seed": 42, "drift": "none"})
    embedded.kubectl("apply", "-f", "-", stdin=manifest)
    embedded.kubectl("wait", "--for=condition=CIPassed", f"cpr/{name}", "--timeout=10m", timeout=620)
    status = embedded.get("cpr", name)["status"]
    assert status["mlflow"]["runIds"], status["mlflow"]
    mlflow_pod = embedded.get(
        "pods", "-l", f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=mlflow"
    )
    pod = mlflow_pod["items"][0]["metadata"]["name"]
    listing = embedded.kubectl("exec", pod, "--", "ls", "/data").stdout.split()
    assert "mlflow.db" in listing, listing
    assert "artifacts" in listing, listing
