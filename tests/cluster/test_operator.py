"""The operator on the real control plane, with the node stand-in running the real stage code
and the real model servers against a real `mlflow server`.

What the node stand-in simulates is listed in tests/harness/node_standin.py (no container
images; processes on local ports; Service URLs rewritten to those ports).
"""

from __future__ import annotations

import copy
import json
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from claimops_stages.api_names import LABEL_ATTEMPT, LABEL_STAGE
from claimops_stages.contract import FAILURE_REASONS, FailureMode, Phase, phase_stages
from tests.conftest import OperatorFactory
from tests.harness import approvals
from tests.harness.control_plane import REPO_ROOT, ControlPlane
from tests.harness.mlflow_server import MlflowServer
from tests.harness.node_standin import NodeStandIn

pytestmark = pytest.mark.cluster

EXAMPLE = REPO_ROOT / "manifests" / "examples" / "pipelinerun.yaml"
#: From the stage table: the CI stages, and the CD stages that run a Job (before the approval).
CI_STAGES = tuple(s.name for s in phase_stages(Phase.CI))
CD_STAGES = tuple(s.name for s in phase_stages(Phase.CD) if s.cli)


def run_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """The example run under another name, with spec fields replaced; small data for speed."""
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"] = {"name": name}
    manifest["spec"]["dataset"]["rows"] = 5000
    manifest["spec"]["training"]["nEstimators"] = 50
    for key, value in spec.items():
        manifest["spec"][key] = copy.deepcopy(value)
    return manifest


def get_run(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    run: dict[str, Any] = json.loads(cp.kubectl("get", "cpr", name, "-n", namespace, "-o", "json").stdout)
    return run


def condition(run: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (run.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def wait_for(
    cp: ControlPlane,
    namespace: str,
    name: str,
    what: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 300,
    operator_log: Callable[[], str] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = get_run(cp, namespace, name)
        if predicate(run):
            return run
        time.sleep(0.5)
    detail = json.dumps(run.get("status"), indent=1)[-4000:]
    log = operator_log()[-3000:] if operator_log else ""
    pytest.fail(f"{name} did not reach {what} in {timeout:.0f} s; status:\n{detail}\noperator log:\n{log}")


def phase_is(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda run: (run.get("status") or {}).get("phase") == phase


def create(cp: ControlPlane, namespace: str, manifest: dict[str, Any]) -> None:
    """`kubectl create` the manifest in the namespace."""
    cp.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def set_approval(cp: ControlPlane, namespace: str, name: str, by: str, **approval: str) -> None:
    """Merge-patch the run's spec.approval as the approver `by` (in the chart's approvers
    group) with kubectl: the admission policy records the decision under that user."""
    patch = json.dumps({"spec": {"approval": approval}})
    cp.kubectl("patch", "cpr", name, "-n", namespace, "--type=merge", "-p", patch, *approvals.as_approver(by))


def stage(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in run["status"]["stages"] if s["name"] == name)


def jobs(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(cp.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)[
        "items"
    ]
    return items


def test_apply_continue_approve_runs_every_stage_to_staging(
    control_plane: ControlPlane,
    namespace: str,
    node_standin: NodeStandIn,
    start_operator: OperatorFactory,
    fresh_mlflow: MlflowServer,
) -> None:
    """With serving turned off in the operator, a run ends once staging serves the candidate.

    The example run registers `claim-settlement`, so it gets an MLflow of its own: version 1 and
    NoChampion hold whatever other tests registered."""
    cp = control_plane
    operator = start_operator(
        namespace, CLAIMOPS_SERVING_ENABLED="false", CLAIMOPS_MLFLOW_TRACKING_URI=fresh_mlflow.url
    )
    # The example as a user applies it, only renamed into the test's namespace.
    cp.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]

    cp.kubectl("wait", "--for=condition=CIPassed", f"cpr/{name}", "-n", namespace, "--timeout=300s")
    run = wait_for(cp, namespace, name, "AwaitingCD", phase_is("AwaitingCD"), operator_log=operator.log)
    assert [stage(run, s)["state"] for s in CI_STAGES] == ["Succeeded"] * len(CI_STAGES)
    assert condition(run, "Succeeded")["reason"] == "AwaitingCD"
    assert run["status"]["mlflow"]["ciRunId"]
    assert stage(run, "quick-train")["metrics"]["auc_roc"] > 0.7

    cp.kubectl("patch", "cpr", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"continueToCD":true}}')
    run = wait_for(
        cp, namespace, name, "AwaitingApproval", phase_is("AwaitingApproval"), operator_log=operator.log
    )
    assert condition(run, "Succeeded")["reason"] == "AwaitingApproval"
    assert condition(run, "Approved")["status"] == "Unknown"
    assert run["status"]["mlflow"]["modelVersion"] == "1"
    assert run["status"]["evaluation"]["candidateAuc"] > 0.7
    assert run["status"]["evaluation"]["reason"] == "NoChampion"
    for name_ in CI_STAGES[1:] + CD_STAGES:
        assert stage(run, name_)["mlflowRunId"], f"{name_} has no MLflow run id"

    table = cp.kubectl("get", "cpr", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "COMMIT", "STAGE", "SUCCEEDED", "REASON", "APPROVAL", "AUC", "AGE"]
    row = table[1].split()
    assert row[:7] == [name, run["spec"]["commit"]["sha"], "manual-approval", "Unknown", "AwaitingApproval",
                       "Pending", row[6]]  # fmt: skip
    assert float(row[6]) == pytest.approx(run["status"]["evaluation"]["candidateAuc"])

    set_approval(cp, namespace, name, decision="Approved", by="reviewer@example.com")
    cp.kubectl("wait", "--for=condition=Approved", f"cpr/{name}", "-n", namespace, "--timeout=60s")
    run = wait_for(
        cp, namespace, name, "deploy-staging",
        lambda r: r["status"].get("currentStage") == "deploy-staging", operator_log=operator.log,
    )  # fmt: skip
    assert run["status"]["approval"]["by"] == "reviewer@example.com"

    staging = json.loads(
        cp.kubectl("get", "mdep", "claim-settlement-staging", "-n", namespace, "-o", "json").stdout
    )
    assert staging["spec"] == {
        "role": "staging",
        "model": {"name": "claim-settlement", "version": "1"},
        "replicas": 1,
    }
    # The ModelDeployment controller rolls a real model server out (run by the node stand-in).
    cp.kubectl("wait", "--for=condition=Succeeded", f"cpr/{name}", "-n", namespace, "--timeout=180s")
    staging = json.loads(
        cp.kubectl("get", "mdep", "claim-settlement-staging", "-n", namespace, "-o", "json").stdout
    )
    assert staging["status"]["servingVersion"] == "1"
    assert staging["status"]["readyReplicas"] == 1
    run = get_run(cp, namespace, name)
    assert condition(run, "Succeeded")["reason"] == "DeployedToStaging"
    assert "not available yet" in condition(run, "Succeeded")["message"]

    # One Job per stage with work, each run once, each owned by the run.
    names = sorted(j["metadata"]["name"] for j in jobs(cp, namespace))
    assert names == sorted(f"{name}-{s}-1" for s in (*CI_STAGES[1:], *CD_STAGES))
    events = cp.kubectl(
        "get", "events", "-n", namespace, f"--field-selector=involvedObject.name={name}"
    ).stdout
    assert "StageSucceeded" in events


def test_rejected_run_ends_rejected_with_nothing_deployed(
    control_plane: ControlPlane, namespace: str, node_standin: NodeStandIn, start_operator: OperatorFactory
) -> None:
    cp = control_plane
    operator = start_operator(namespace)
    create(cp, namespace, run_manifest("rejected", autoContinueToCD=True))
    wait_for(
        cp, namespace, "rejected", "AwaitingApproval", phase_is("AwaitingApproval"), operator_log=operator.log
    )
    set_approval(cp, namespace, "rejected", decision="Rejected", by="qa", comment="holdout looks odd")
    cp.kubectl("wait", "--for=condition=Succeeded=False", "cpr/rejected", "-n", namespace, "--timeout=60s")
    run = get_run(cp, namespace, "rejected")
    assert condition(run, "Succeeded")["reason"] == "Rejected"
    assert condition(run, "Approved")["status"] == "False"
    assert run["status"]["phase"] == "Rejected"
    assert cp.kubectl("get", "mdep", "-n", namespace, "-o", "name").stdout.strip() == ""


@pytest.mark.parametrize("mode", list(FailureMode), ids=[m.value for m in FailureMode])
def test_each_failure_mode_ends_with_its_documented_reason(
    control_plane: ControlPlane,
    namespace: str,
    node_standin: NodeStandIn,
    start_operator: OperatorFactory,
    mode: FailureMode,
) -> None:
    cp = control_plane
    operator = start_operator(namespace)
    manifest = run_manifest("faulty", autoContinueToCD=True, failureInjection=[mode.value], retries=0)
    create(cp, namespace, manifest)
    cp.kubectl("wait", "--for=condition=Succeeded=False", "cpr/faulty", "-n", namespace, "--timeout=300s")
    run = get_run(cp, namespace, "faulty")
    succeeded = condition(run, "Succeeded")
    assert succeeded["reason"] == FAILURE_REASONS[mode].value, operator.log()[-2000:]
    assert succeeded["message"]
    assert run["status"]["phase"] == "Failed"
    assert cp.kubectl("get", "mdep", "-n", namespace, "-o", "name").stdout.strip() == ""
    failed = [s for s in run["status"]["stages"] if s["state"] == "Failed"]
    assert [s["reason"] for s in failed] == [FAILURE_REASONS[mode].value]


class _ApiWatch(threading.Thread):
    """Watches one list call through the API server and queues (source, event type, object)
    for every event, resuming from the last resourceVersion when the server ends the watch."""

    def __init__(
        self, source: str, list_call: Callable[..., Any], out: queue.Queue[Any], **kwargs: Any
    ) -> None:
        super().__init__(daemon=True, name=f"watch-{source}")
        self.source, self.list_call, self.out, self.kwargs = source, list_call, out, kwargs
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        from kubernetes import watch

        version: str | None = None
        while not self.stopped.is_set():
            try:
                stream = watch.Watch().stream(
                    self.list_call, resource_version=version, timeout_seconds=10, **self.kwargs
                )
                for event in stream:
                    obj = event["object"]
                    obj = obj if isinstance(obj, dict) else obj.to_dict()
                    version = obj["metadata"].get("resourceVersion") or obj["metadata"].get(
                        "resource_version"
                    )
                    self.out.put((self.source, event["type"], obj))
            except Exception as exc:  # reported by the test: a lost watch would skip boundaries
                self.errors.append(exc)
                time.sleep(0.2)


def _staged_or_over(status: dict[str, Any]) -> bool:
    """Staging serves the candidate, or the run ended (then the assertions say why)."""
    wrapped = {"status": status}
    return condition(wrapped, "Deployed").get("status") == "True" or condition(wrapped, "Succeeded").get(
        "status"
    ) in ("True", "False")


def test_operator_killed_at_every_stage_boundary_loses_nothing(
    control_plane: ControlPlane,
    namespace: str,
    node_standin: NodeStandIn,
    start_operator: OperatorFactory,
    tmp_path: Path,
) -> None:
    """SIGKILL the operator on every Job it creates and every status write of the run, as the
    API server reports them (watch events), then start it again; approve once it waits.

    Each kill follows its event (within the watch's latency, a few ms), so the restarted
    operator finds every boundary: a Job created before its stage's status says so, a status
    written before the next Job exists. Every stage must still run exactly once."""
    from kubernetes import client

    cp = control_plane
    operator = start_operator(namespace)
    api = cp.api_client()
    events: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue()
    watches = [
        _ApiWatch("job", client.BatchV1Api(api).list_namespaced_job, events, namespace=namespace),
        _ApiWatch(
            "run",
            client.CustomObjectsApi(api).list_namespaced_custom_object,
            events,
            group="claimops.io",
            version="v1alpha1",
            namespace=namespace,
            plural="pipelineruns",
            field_selector="metadata.name=sturdy",
        ),
    ]
    for w in watches:
        w.start()
    time.sleep(1)  # both watches open before the run exists, so they report it from the start
    create(cp, namespace, run_manifest("sturdy", autoContinueToCD=True, model={"name": "sturdy"}))
    killed_on: list[str] = []
    created_jobs: list[str] = []
    late_jobs: list[str] = []
    last_status: dict[str, Any] = {}
    approved = False
    deadline = time.monotonic() + 900
    try:
        # Up to staging: every Job stage (CI and CD) and the gate. Shadow and promotion need
        # model servers answering shadow traffic, which test_serving_journey covers.
        while not _staged_or_over(last_status):
            if time.monotonic() > deadline:
                errors = [e for w in watches for e in w.errors]
                pytest.fail(
                    f"the run did not finish; killed on {killed_on}; watch errors {errors}\n{operator.log()[-3000:]}"
                )
            try:
                source, kind, obj = events.get(timeout=1)
            except queue.Empty:
                continue
            if source == "job" and kind == "ADDED":
                created_jobs.append(obj["metadata"]["name"])
                what = f"job {obj['metadata']['name']} created"
            elif source == "run" and kind == "MODIFIED" and (obj.get("status") or {}) != last_status:
                last_status = obj.get("status") or {}
                what = f"status: {last_status.get('currentStage')} {last_status.get('phase')}"
            else:
                continue
            operator.kill()
            killed_on.append(what)
            if last_status.get("phase") == "AwaitingApproval" and not approved:
                # Approve while it is down: the approval lives in the spec, not in memory.
                set_approval(cp, namespace, "sturdy", decision="Approved", by="night-shift")
                approved = True
            operator.start()
        # Staging serves: stop the operator so it starts no shadow Job behind the checks below,
        # and collect the Jobs it created after the last kill point.
        operator.kill()
        time.sleep(2)
        while not events.empty():
            source, kind, obj = events.get()
            if source == "job" and kind == "ADDED":
                late_jobs.append(obj["metadata"]["name"])
    finally:
        for w in watches:
            w.stopped.set()
    run = get_run(cp, namespace, "sturdy")
    assert condition(run, "Deployed")["status"] == "True", json.dumps(run["status"], indent=1)[-3000:]
    assert run["status"]["approval"]["decision"] == "Approved"
    assert run["status"]["approval"]["by"] == "night-shift"
    # Every Job creation was a kill point, and so was every status write (at least one per Job:
    # its stage's result).
    job_kills = [k for k in killed_on if k.startswith("job ")]
    assert job_kills == [f"job {name} created" for name in created_jobs]
    assert len(killed_on) - len(job_kills) >= len(created_jobs), killed_on

    # Exactly one Job per stage attempt, and no stage needed a second attempt.
    by_stage: dict[str, list[str]] = {}
    for job in jobs(cp, namespace):
        labels = job["metadata"]["labels"]
        by_stage.setdefault(labels[LABEL_STAGE], []).append(labels[LABEL_ATTEMPT])
    assert {s: by_stage.get(s) for s in (*CI_STAGES[1:], *CD_STAGES)} == {
        s: ["1"] for s in (*CI_STAGES[1:], *CD_STAGES)
    }
    assert all(attempts == ["1"] for attempts in by_stage.values()), by_stage
    assert sorted(created_jobs + late_jobs) == sorted(j["metadata"]["name"] for j in jobs(cp, namespace))
