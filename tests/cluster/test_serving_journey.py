"""The whole journey on the real control plane: two commits go from CI to production, then a
rollback with one kubectl command returns production and the `champion` alias to the first.

Real here: etcd, kube-apiserver, kube-controller-manager (Job, Deployment, ReplicaSet
controllers), the operator process, `mlflow server`, every stage Job's code and the model
servers. Simulated by the node stand-in (tests/harness/node_standin.py): pods run as local
processes instead of containers, on local ports, and Service URLs are rewritten to them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from mlflow import MlflowClient

from claimops_stages import release
from claimops_stages.api_names import API_VERSION, MODEL_DEPLOYMENT
from claimops_stages.contract import StageInputs
from tests.cluster.test_operator import (
    condition,
    create,
    get_run,
    phase_is,
    run_manifest,
    set_approval,
    stage,
    wait_for,
)
from tests.conftest import OperatorFactory
from tests.harness.control_plane import ControlPlane
from tests.harness.mlflow_server import MlflowServer
from tests.harness.node_standin import NodeStandIn

pytestmark = pytest.mark.cluster

MODEL = "journey"
PRODUCTION = f"{MODEL}-production"


def mdep(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(cp.kubectl("get", "mdep", name, "-n", namespace, "-o", "json").stdout)
    return found


def wait_serving(
    cp: ControlPlane, namespace: str, name: str, version: str, timeout: float = 180
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = mdep(cp, namespace, name)
        status = found.get("status") or {}
        ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        if status.get("servingVersion") == version and ready.get("status") == "True":
            return found
        time.sleep(0.5)
    pytest.fail(f"{name} did not serve version {version}: {json.dumps(found.get('status'), indent=1)}")


def job_inputs(cp: ControlPlane, namespace: str, job: str) -> StageInputs:
    """The arguments the operator gave a stage Job, parsed as the stage CLI parses them."""
    found = json.loads(cp.kubectl("get", "job", job, "-n", namespace, "-o", "json").stdout)
    return StageInputs.parse(found["spec"]["template"]["spec"]["containers"][0]["args"])


def champion(mlflow: MlflowServer) -> str:
    return str(MlflowClient(mlflow.url).get_model_version_by_alias(MODEL, "champion").version)


def test_two_commits_reach_production_and_rollback_restores_the_first(
    control_plane: ControlPlane,
    namespace: str,
    node_standin: NodeStandIn,
    start_operator: OperatorFactory,
    cluster_mlflow: MlflowServer,
) -> None:
    cp = control_plane
    operator = start_operator(namespace, CLAIMOPS_STAGE_IMAGE="claimops/stages:journey")

    # --- commit 1: no champion, no production yet ---------------------------------------
    first = run_manifest("first", autoContinueToCD=True, model={"name": MODEL})
    create(cp, namespace, first)
    wait_for(
        cp, namespace, "first", "AwaitingApproval", phase_is("AwaitingApproval"), operator_log=operator.log
    )
    set_approval(cp, namespace, "first", decision="Approved", by="release-manager")
    cp.kubectl("wait", "--for=condition=Succeeded", "cpr/first", "-n", namespace, "--timeout=600s")
    run = get_run(cp, namespace, "first")
    assert condition(run, "Succeeded")["reason"] == "Succeeded"
    assert stage(run, "evaluate-vs-champion")["reason"] == "NoChampion"
    assert stage(run, "shadow-monitor")["reason"] == "NoProduction"
    assert stage(run, "promote-production")["state"] == "Succeeded"
    assert champion(cluster_mlflow) == "1"
    production = wait_serving(cp, namespace, PRODUCTION, "1")
    assert production["status"]["history"][-1]["pipelineRun"] == "first"

    # The model servers are real Deployments and Services, restricted and probed.
    deployment = json.loads(cp.kubectl("get", "deployment", PRODUCTION, "-n", namespace, "-o", "json").stdout)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "claimops/stages:journey"
    assert container["args"][:4] == ["--model-name", MODEL, "--model-version", "1"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == MODEL_DEPLOYMENT.kind
    service = json.loads(cp.kubectl("get", "service", PRODUCTION, "-n", namespace, "-o", "json").stdout)
    assert service["spec"]["ports"][0]["port"] == 8080
    for role in ("staging", "shadow"):
        assert mdep(cp, namespace, f"{MODEL}-{role}")["status"]["servingVersion"] == "1"

    # --- commit 2: evaluated against v1, shadowed beside production v1, promoted --------
    second = run_manifest(
        "second",
        autoContinueToCD=True,
        model={"name": MODEL},
    )
    second["spec"]["commit"]["sha"] = "9" * 40
    second["spec"]["dataset"]["seed"] = 7
    second["spec"]["gates"]["minShadowAgreement"] = 0.8
    second["spec"]["gates"]["maxAucDrop"] = 0.1
    create(cp, namespace, second)
    # Approved in advance, before the run reaches its gate: recorded now, counted there.
    set_approval(cp, namespace, "second", decision="Approved", by="release-manager")
    cp.kubectl("wait", "--for=condition=Succeeded", "cpr/second", "-n", namespace, "--timeout=600s")
    run = get_run(cp, namespace, "second")
    assert run["status"]["evaluation"]["championVersion"] == "1"
    # The operator hands the spec's gates to the stages that apply them (not the defaults),
    # points shadow-monitor at production, and records what the stage reported.
    evaluate = job_inputs(cp, namespace, stage(run, "evaluate-vs-champion")["job"])
    assert (evaluate.max_auc_drop, evaluate.candidate_version) == (0.1, "2")
    shadow_stage = stage(run, "shadow-monitor")
    shadow = job_inputs(cp, namespace, shadow_stage["job"])
    assert (shadow.min_shadow_agreement, shadow.candidate_version) == (0.8, "2")
    assert shadow.production_url == mdep(cp, namespace, PRODUCTION)["status"]["url"]
    assert shadow_stage["reason"] == "Passed"
    assert shadow_stage["outputs"]["production_version"] == "1"
    assert run["status"]["shadow"]["agreement"] == shadow_stage["metrics"]["agreement"]
    assert run["status"]["shadow"]["passed"] is True
    assert champion(cluster_mlflow) == "2"
    production = wait_serving(cp, namespace, PRODUCTION, "2")
    # The release record of v2: on its source run, digest in its tag, summarised in history.
    client = MlflowClient(cluster_mlflow.url)
    tags = client.get_model_version(MODEL, "2").tags
    source_run = str(client.get_model_version(MODEL, "2").run_id)
    local = client.download_artifacts(source_run, release.artifact_path("2"))
    with open(local, "rb") as stored:
        data = stored.read()
    assert release.verify(data, tags[release.TAG_DIGEST])
    predicate = json.loads(data)["predicate"]
    assert [(a["user"], a["decision"]) for a in predicate["approvals"]] == [("release-manager", "Approved")]
    assert predicate["submitter"]["username"] == "claimops-admin"
    assert predicate["pipelineRun"]["name"] == "second"
    assert predicate["evaluation"]["championVersion"] == "1"
    served = production["status"]["history"][-1]
    assert (served["pipelineRun"], served["approvedBy"], served["submitter"]) == (
        "second",
        ["release-manager"],
        "claimops-admin",
    )
    assert served["releaseDigest"] == tags[release.TAG_DIGEST]

    # --- rollback: one kubectl command --------------------------------------------------
    cp.kubectl(
        "patch", "mdep", PRODUCTION, "-n", namespace, "--type=merge",
        "-p", '{"spec":{"rollback":{"requestId":"after-incident-42","reason":"incident 42","requestedBy":{"username":"someone-else"}}}}',
    )  # fmt: skip
    cp.kubectl("wait", "--for=condition=RolledBack", f"mdep/{PRODUCTION}", "-n", namespace, "--timeout=300s")
    production = wait_serving(cp, namespace, PRODUCTION, "1")
    status = production["status"]
    assert status["rolledBackFrom"] == "2"
    assert status["observedRollbackRequestId"] == "after-incident-42"
    # Who asked is what the API server authenticated, not what the patch claimed.
    restored = status["history"][-1]
    assert (restored["reason"], restored["requestedBy"], restored["comment"]) == (
        "Rollback",
        "claimops-admin",
        "incident 42",
    )
    assert champion(cluster_mlflow) == "1"
    tags = MlflowClient(cluster_mlflow.url).get_model_version(MODEL, "2").tags
    assert tags["rolled_back_to"] == "1"
    restored_tags = MlflowClient(cluster_mlflow.url).get_model_version(MODEL, "1").tags
    assert (restored_tags["claimops.rollback.by"], restored_tags["claimops.rollback.reason"]) == (
        "claimops-admin",
        "incident 42",
    )
    events = cp.kubectl(
        "get", "events", "-n", namespace, f"--field-selector=involvedObject.name={PRODUCTION}"
    ).stdout
    assert "RolledBack" in events


def test_production_rollback_moves_the_alias_and_the_servers_back(
    control_plane: ControlPlane,
    namespace: str,
    node_standin: NodeStandIn,
    start_operator: OperatorFactory,
    cluster_mlflow: MlflowServer,
) -> None:
    """A production ModelDeployment serving v2 (promoted over v1) rolls back with one patch."""
    from claimops_stages import registry
    from tests.harness.model_server import register_model

    model = "rollback-only"
    client = MlflowClient(cluster_mlflow.url)
    for seed in (1, 2):
        version, _ = register_model(cluster_mlflow.url, model, rows=2000, seed=seed, n_estimators=20)
        client.set_model_version_tag(model, version, registry.TAG_EVALUATION_PASSED, "true")
        registry.promote(client, model, version, "test", "setup")
    cp = control_plane
    operator = start_operator(namespace)
    name = f"{model}-production"
    manifest = {
        "apiVersion": API_VERSION,
        "kind": MODEL_DEPLOYMENT.kind,
        "metadata": {"name": name},
        "spec": {"role": "production", "model": {"name": model, "version": "2"}},
    }
    create(cp, namespace, manifest)
    wait_serving(cp, namespace, name, "2")

    rollback = '{"spec":{"rollback":{"requestId":"r-1","reason":"p99 regression"}}}'
    cp.kubectl("patch", "mdep", name, "-n", namespace, "--type=merge", "-p", rollback)
    try:
        cp.kubectl("wait", "--for=condition=RolledBack", f"mdep/{name}", "-n", namespace, "--timeout=180s")
    except Exception:
        jobs = cp.kubectl("get", "jobs,pods", "-n", namespace, "-o", "wide", check=False).stdout
        status = json.dumps(mdep(cp, namespace, name).get("status"), indent=1)
        logs = "\n".join(node_standin.logs(namespace, p) for p in node_standin.pods_run(namespace))[-4000:]
        pytest.fail(f"no RolledBack condition\n{jobs}\n{status}\n{logs}\n{operator.log()[-3000:]}")
    status = wait_serving(cp, namespace, name, "1")["status"]
    assert status["rolledBackFrom"] == "2"
    assert status["rolledBackTo"] == "1"
    assert status["history"][-1]["reason"] == "Rollback"
    assert str(client.get_model_version_by_alias(model, "champion").version) == "1"
    # The same request id again does nothing; a new one finds no earlier champion and says so.
    again = '{"spec":{"rollback":{"requestId":"r-2"}}}'
    cp.kubectl("patch", "mdep", name, "-n", namespace, "--type=merge", "-p", again)
    cp.kubectl("wait", "--for=condition=RolledBack=False", f"mdep/{name}", "-n", namespace, "--timeout=180s")
    failed = mdep(cp, namespace, name)["status"]
    rolled = next(c for c in failed["conditions"] if c["type"] == "RolledBack")
    assert rolled["reason"] == "NoPreviousChampion"
    assert failed["servingVersion"] == "1"
