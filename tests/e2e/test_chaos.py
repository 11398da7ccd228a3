"""Fault experiments on the kind cluster (issue #13, item 3). In every `make e2e`: a stage
pod deleted mid-run, a stage Job deleted mid-run, the leading operator SIGKILLed mid-stage
and its pod deleted at the approval gate. Behind `make chaos`: the backing services killed
mid-stage, the artifact store's volume turned read-only under a running MinIO, the node
restarted and the chart upgraded with runs in flight.

Every experiment ends with :func:`tests.e2e.chaos.check_invariants` on the runs it started
(completed or failed with a documented reason, one Job per stage attempt, no approval lost,
the champion intact or earned, production serving it, the registry whole), restores what it
broke in a ``finally`` and waits until it is healthy again, and appends its row to
``/tmp/chaos-results.tsv`` (printed with ``-s``). The tests run last in the e2e session
(tests/e2e/conftest.py) and in this file's order: the operator experiment continues the run
the pod experiment left at the CD gate, so CI runs once for both.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from claimops_stages.api_names import LABEL_COMPONENT
from tests.e2e import chaos
from tests.e2e.chaos import Row
from tests.e2e.conftest import REPO, KindCluster, champion_version, pipelinerun

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(2400)]

#: The run the pod experiment starts and the operator experiment continues.
CI_RUN = "chaos-pod-lost"
REVIEWER = "chaos-reviewer"
#: The stage whose pod the pod experiment deletes: one that runs long enough to be caught
#: with its container running, early in the pipeline.
POD_STAGE = "quick-train"


def sha(tag: str) -> str:
    return (tag.encode().hex() + "0" * 40)[:40]


def start_run(kind: KindCluster, name: str, **spec: Any) -> None:
    kind.kubectl("delete", "cpr", name, "--ignore-not-found", "--wait=true")
    kind.kubectl("apply", "-f", "-", stdin=pipelinerun(name, sha(name), **spec))


def approve(kind: KindCluster, run: str, reviewer: str = REVIEWER) -> None:
    """As an approver who is not the submitter (the chart's four-eyes rule)."""
    body = {"spec": {"approval": {"decision": "Approved", "comment": "chaos experiment"}}}
    kind.kubectl(
        "patch", "cpr", run, "--type", "merge", f"--as={reviewer}", "--as-group=claimops:operators",
        "-p", json.dumps(body),
    )  # fmt: skip


def cancel(kind: KindCluster, run: str) -> None:
    kind.kubectl("patch", "cpr", run, "--type", "merge", "-p", '{"spec":{"cancel":true}}', check=False)


def decisions(kind: KindCluster, run: str) -> list[dict[str, Any]]:
    return list(kind.get("cpr", run)["spec"].get("decisions") or [])


@pytest.fixture(scope="module")
def started(kind: KindCluster) -> Iterator[list[str]]:
    """The runs this module started: any still going at the end is cancelled, so nothing the
    experiments left behind keeps the operator (or the next session) busy."""
    runs: list[str] = []
    yield runs
    for run in runs:
        status = kind.kubectl("get", "cpr", run, "-o", "json", check=False)
        if status.returncode == 0 and not chaos.is_finished(json.loads(status.stdout).get("status") or {}):
            cancel(kind, run)


def wait_gate_or_end(kind: KindCluster, run: str, timeout: float = 1200) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = chaos.run_status(kind, run)
        return status if status.get("phase") == "AwaitingApproval" or chaos.is_finished(status) else None

    return dict(kind.wait_for(f"{run} at the approval gate or finished", probe, timeout, every=2))


def report(row: Row, verdict: chaos.Verdict) -> None:
    row.runs_lost, row.duplicate_jobs = verdict.runs_lost, verdict.duplicate_jobs
    row.overlapping_attempts = verdict.overlapping_attempts
    row.champion_intact, row.champion_note = verdict.champion_intact, verdict.champion_note
    row.outcome = row.outcome or verdict.outcome()
    row.emit()


# --------------------------------------------------------------------------------------------
# a. A stage pod deleted mid-run (make e2e)


def test_a_deleted_stage_pod_fails_its_attempt_and_a_second_job_retries_it(
    kind: KindCluster, mlflow: httpx.Client, started: list[str]
) -> None:
    before = chaos.baseline(mlflow)
    row = Row("stage pod deleted (kubectl delete pod)", POD_STAGE)
    started.append(CI_RUN)
    start_run(kind, CI_RUN, retries=1)
    pod = chaos.wait_stage_running(kind, CI_RUN, POD_STAGE)
    assert pod
    # As a user (or a node drain) deletes it: with the default grace period.
    kind.kubectl("delete", "pod", pod, "--wait=false")
    fault = time.monotonic()

    def moved() -> dict[str, Any] | None:
        # Moving again: attempt 2 has its Job (out of the retry backoff), or the stage failed.
        entry = chaos.stage_entry(chaos.run_status(kind, CI_RUN), POD_STAGE)
        if entry.get("state") == "Failed":
            return entry
        if int(entry.get("attempt") or 1) >= 2 and entry.get("reason") != "RetryBackoff":
            return entry
        return None

    kind.wait_for(f"{POD_STAGE} to retry or fail after its pod was deleted", moved, 300, every=1)
    row.recovery_s = time.monotonic() - fault
    # The run goes on to the CD gate (test d continues it from there) or ends.
    status = kind.wait_for(
        f"{CI_RUN} through CI or finished",
        lambda: (
            (s := chaos.run_status(kind, CI_RUN))
            and (
                chaos.is_finished(s)
                or s.get("phase") == "AwaitingCD"
                or s.get("currentStage") == "full-train"
            )
            and s
        ),
        600,
        every=2,
    )
    entry = chaos.stage_entry(status, POD_STAGE)
    jobs = {j["metadata"]["name"]: j for j in chaos.run_jobs(kind, CI_RUN)}
    first, second = (chaos.job_name(CI_RUN, POD_STAGE, n) for n in (1, 2))
    finished = chaos.is_finished(status)
    if finished:  # only a cleanly documented failure may end this run here
        verdict = chaos.check_invariants(kind, mlflow, [CI_RUN], before)
    else:
        verdict = chaos.check_invariants(kind, mlflow, [CI_RUN], before, in_progress={CI_RUN: "AwaitingCD"})
    row.outcome = f"{status.get('phase')}/{chaos.succeeded_condition(status).get('reason')} {POD_STAGE} attempt {entry.get('attempt')} {entry.get('state')}"
    report(row, verdict)

    assert first in jobs, f"the deleted pod's Job {first} is gone: {sorted(jobs)}"
    failed = jobs[first].get("status", {}).get("failed")
    assert failed, f"{first} did not fail after its pod was deleted: {jobs[first].get('status')}"
    assert second in jobs, (
        f"no attempt 2 Job ({second}) after the pod was deleted: {sorted(jobs)}; stage {entry}"
    )
    if entry.get("state") != "Succeeded":
        said = f"{entry.get('reason')} {entry.get('message')}".lower()
        assert "pod" in said, f"{POD_STAGE} failed without saying its pod was lost: {entry}"
        assert "lost" in said or "deleted" in said, (
            f"{POD_STAGE} failed without saying its pod was lost: {entry}"
        )
    else:
        assert int(entry["attempt"]) == 2, entry
        assert entry["job"] == second, entry
    assert not verdict.violations, "\n".join(verdict.violations)


# --------------------------------------------------------------------------------------------
# a2. A running stage's Job deleted (make e2e)

JOB_RUN = "chaos-job-deleted"


def run_events(kind: KindCluster, run: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.kind=PipelineRun,involvedObject.name={run}"
    return list(kind.get("events", "--field-selector", selector)["items"])


def test_a2_a_deleted_stage_job_fails_its_attempt_and_the_next_starts_after_its_pod_ended(
    kind: KindCluster, mlflow: httpx.Client, started: list[str]
) -> None:
    before = chaos.baseline(mlflow)
    row = Row("stage Job deleted (kubectl delete job)", POD_STAGE)
    started.append(JOB_RUN)
    start_run(kind, JOB_RUN, retries=1)
    pod = chaos.wait_stage_running(kind, JOB_RUN, POD_STAGE)
    assert pod
    first, second = (chaos.job_name(JOB_RUN, POD_STAGE, n) for n in (1, 2))
    # As kubectl does by default: background propagation, the Job object goes at once and
    # its pod is stopped after it.
    kind.kubectl("delete", "job", first, "--wait=false")
    fault = time.monotonic()
    pod_gone_at: float | None = None
    second_at: float | None = None

    def moved() -> dict[str, Any] | None:
        nonlocal pod_gone_at, second_at
        # Read the new Job first: a pod seen present afterwards was present when it was made.
        made = kind.kubectl("get", "job", second, "--ignore-not-found", "-o", "name").stdout.strip()
        phase = kind.kubectl("get", "pod", pod, "--ignore-not-found", "-o", "jsonpath={.status.phase}").stdout
        there = phase.strip() not in ("", "Succeeded", "Failed")  # its container still runs
        if not there and pod_gone_at is None:
            pod_gone_at = time.monotonic()
        if made and second_at is None:
            second_at = time.monotonic()
            assert not there, f"attempt 2 ({second}) started while the deleted Job's pod {pod} ran ({phase})"
        entry = chaos.stage_entry(chaos.run_status(kind, JOB_RUN), POD_STAGE)
        return entry if entry.get("state") == "Failed" or (second_at and pod_gone_at) else None

    kind.wait_for(f"{POD_STAGE} to start attempt 2 or fail after its Job was deleted", moved, 300, every=0.5)
    row.recovery_s = time.monotonic() - fault
    status = kind.wait_for(
        f"{JOB_RUN} through CI or finished",
        lambda: (
            (s := chaos.run_status(kind, JOB_RUN))
            and (chaos.is_finished(s) or s.get("phase") == "AwaitingCD")
            and s
        ),
        600,
        every=2,
    )
    entry = chaos.stage_entry(status, POD_STAGE)
    verdict = chaos.check_invariants(kind, mlflow, [JOB_RUN], before, in_progress={JOB_RUN: "AwaitingCD"})
    row.outcome = f"{status.get('phase')} {POD_STAGE} attempt {entry.get('attempt')} {entry.get('state')}"
    report(row, verdict)
    cancel(kind, JOB_RUN)  # CI was the experiment; nothing to continue

    retries = [e["message"] for e in run_events(kind, JOB_RUN) if e.get("reason") == "StageRetry"]
    assert any(first in m and "JobDeleted" in m for m in retries), (
        f"no StageRetry Event says {first} was deleted: {retries}"
    )
    assert entry.get("state") == "Succeeded", f"{POD_STAGE} did not pass on attempt 2: {entry}"
    assert (int(entry["attempt"]), entry["job"]) == (2, second), entry
    jobs = {j["metadata"]["name"] for j in chaos.run_jobs(kind, JOB_RUN)}
    assert first not in jobs, f"the deleted Job {first} was created again under its name"
    assert status.get("phase") == "AwaitingCD", f"{JOB_RUN} ended {verdict.outcome()}"
    assert not verdict.violations, "\n".join(verdict.violations)


# --------------------------------------------------------------------------------------------
# d. The leading operator killed mid-stage and at the approval gate (make e2e)


def election_lease(kind: KindCluster) -> str:
    """The Lease the operator replicas elect their leader on (the Deployment's own setting)."""
    deployment = kind.get("deployment", "-l", f"{LABEL_COMPONENT}=operator")["items"]
    assert deployment, "no operator Deployment"
    spec = deployment[0]["spec"]
    env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0].get("env", [])}
    lease = env.get("CLAIMOPS_LEADER_ELECTION_LEASE")
    # Not a skip: without a standby there is no failover to test, and CI must say so.
    assert lease, "the operator Deployment sets no CLAIMOPS_LEADER_ELECTION_LEASE (no leader election)"
    assert int(spec.get("replicas") or 1) >= 2, (
        f"the operator runs {spec.get('replicas')} replica(s), no standby"
    )
    return str(lease)


def lease_holder(kind: KindCluster, lease: str) -> str:
    return str(kind.get("lease", lease)["spec"].get("holderIdentity") or "")


def kill_leader(kind: KindCluster, lease: str) -> tuple[str, str, float]:
    """Delete the leading operator pod at once (--grace-period=0 --force); returns (old leader,
    new leader, seconds until another replica held the Lease). The kubelet still sends SIGTERM,
    so the leader releases the Lease as it goes (crash_leader is the silent path).

    The new leader is the standby, or the pod the Deployment starts in the deleted one's place
    when that pod's first look at the Lease comes before the standby's next one (standbys poll
    every 1-1.2 s, and the release waits for Kopf to stop): then it is a standby too."""
    leader, pods = _leader_and_pods(kind, lease)
    kind.kubectl("delete", "pod", leader, "--grace-period=0", "--force", "--wait=false")
    fault = time.monotonic()
    standby = set(pods) - {leader}

    def taken_over() -> str | None:
        holder = lease_holder(kind, lease)
        return holder if holder and holder != leader else None

    new = str(kind.wait_for(f"a standby to take Lease {lease} from {leader}", taken_over, 60, every=0.5))
    took = time.monotonic() - fault
    replicas = {p["metadata"]["name"] for p in chaos.component_pods(kind, "operator")}
    assert new in replicas, f"Lease went to {new}, none of the operator pods {replicas}"
    return leader, new if new in standby else f"{new}, the replacement pod", took


def crash_leader(kind: KindCluster, lease: str) -> tuple[str, str, float]:
    """SIGKILL the leading operator's process from the node, as a container-kill experiment
    does: no SIGTERM, so nothing releases the Lease and it must expire. Returns (old leader,
    new leader, seconds until a live process renewed the Lease). The new leader is the
    standby, or the killed replica's restarted container when the kubelet brings it back
    first (same identity: it renews the Lease it finds in its own name)."""
    leader, pods = _leader_and_pods(kind, lease)
    pid = chaos.container_pid(kind, leader, "operator")
    killed_at = datetime.now(UTC)
    chaos.on_node(kind, "kill", "-KILL", str(pid))
    fault = time.monotonic()

    def renewed_by_a_live_process() -> str | None:
        spec = kind.get("lease", lease)["spec"]
        renewed = datetime.fromisoformat(
            str(spec.get("renewTime") or "1970-01-01T00:00:00Z").replace("Z", "+00:00")
        )
        # The killed process cannot renew any more: a renewal after the kill is someone alive.
        return str(spec.get("holderIdentity")) if renewed > killed_at + timedelta(seconds=0.2) else None

    new = str(
        kind.wait_for(f"a live operator to renew Lease {lease}", renewed_by_a_live_process, 60, every=0.5)
    )
    took = time.monotonic() - fault
    assert new in pods, f"Lease went to {new}, none of the operator pods {pods}"
    return leader, new, took


def _leader_and_pods(kind: KindCluster, lease: str) -> tuple[str, list[str]]:
    chaos.wait_component_ready(kind, "operator")
    leader = lease_holder(kind, lease)
    pods = [p["metadata"]["name"] for p in chaos.component_pods(kind, "operator")]
    assert leader in pods, f"Lease {lease} holder {leader!r} is none of the operator pods {pods}"
    return leader, pods


def test_d_the_standby_operator_takes_over_mid_stage_and_at_the_gate(
    kind: KindCluster, mlflow: httpx.Client, started: list[str]
) -> None:
    lease = election_lease(kind)
    before = chaos.baseline(mlflow)
    # Continue the run test a left at the CD gate (CI already ran once, after a fault of its
    # own); start one when test a did not run or did not leave it there.
    reuse = kind.kubectl("get", "cpr", CI_RUN, "-o", "json", check=False)
    if reuse.returncode == 0 and (json.loads(reuse.stdout).get("status") or {}).get("phase") == "AwaitingCD":
        run = CI_RUN
        kind.kubectl("patch", "cpr", run, "--type", "merge", "-p", '{"spec":{"continueToCD":true}}')
    else:
        run = "chaos-leader"
        started.append(run)
        start_run(kind, run, autoContinueToCD=True, retries=1)
    rows = []
    try:
        chaos.wait_stage_running(kind, run, "full-train", timeout=900)
        old, new, took = crash_leader(kind, lease)
        rows.append(Row(f"leading operator SIGKILLed ({old} -> {new})", "full-train", recovery_s=took))
        status = wait_gate_or_end(kind, run)
        assert status.get("phase") == "AwaitingApproval", (
            f"{run} did not reach the gate: {status.get('conditions')}"
        )
        old, new, took = kill_leader(kind, lease)
        # The decision arrives while the new leader takes over: admission records it, the
        # new leader must count it.
        approve(kind, run)
        before.decisions[run] = decisions(kind, run)
        assert before.decisions[run], f"{run}: the approval was not recorded in spec.decisions"
        rows.append(Row(f"leading operator pod deleted ({old} -> {new})", "manual-approval", recovery_s=took))
        status = chaos.wait_finished(kind, run, 1200)
    finally:
        chaos.wait_component_ready(kind, "operator")
    verdict = chaos.check_invariants(kind, mlflow, [run], before)
    for row in rows:
        report(row, verdict)
    assert status.get("phase") == "Succeeded", f"{run} ended {verdict.outcome()}: {status.get('conditions')}"
    retried = [
        s["name"] for s in status["stages"] if int(s.get("attempt") or 1) > 1 and s["name"] != POD_STAGE
    ]
    assert not retried, f"a failover made stages retry: {retried}"
    for row in rows:
        assert row.recovery_s is not None
        assert row.recovery_s <= 15, f"{row.fault} at {row.injected_at}: takeover took {row.recovery_s:.1f} s"
    assert not verdict.violations, "\n".join(verdict.violations)


# --------------------------------------------------------------------------------------------
# b. Backing services killed mid-stage (make chaos)

#: (component label, stage during which its pod is killed), in pipeline order: one run
#: carries the faults in turn, and a new run is started only when a fault ended the last one.
SERVICE_FAULTS = (
    ("minio", "quick-train"),
    ("mlflow", "full-train"),
    ("postgresql", "evaluate-vs-champion"),
)


@pytest.mark.chaos_full
def test_b_backing_services_killed_mid_stage(
    kind: KindCluster, mlflow: httpx.Client, started: list[str]
) -> None:
    before = chaos.baseline(mlflow)
    runs: list[str] = []
    rows: list[tuple[Row, str]] = []
    for component, stage in SERVICE_FAULTS:
        # The last fault may still end its run (a retry budget running out): then this fault
        # needs a run of its own.
        pod = None
        while pod is None:
            if not runs or chaos.is_finished(chaos.run_status(kind, runs[-1])):
                assert len(runs) < len(SERVICE_FAULTS), f"no run left to inject {component} into"
                runs.append(f"chaos-services-{len(runs) + 1}")
                started.append(runs[-1])
                start_run(kind, runs[-1], autoContinueToCD=True, retries=2)
            pod = chaos.wait_stage_running(kind, runs[-1], stage, timeout=900, ended_ok=True)
        killed = chaos.delete_component_pods(kind, component)
        try:
            took = chaos.wait_component_ready(kind, component, killed)
        finally:  # whatever failed above, the next experiment needs the service back
            chaos.wait_component_ready(kind, component, killed)
        rows.append((Row(f"{component} pod killed", stage, recovery_s=took), runs[-1]))
    for run in runs:
        status = wait_gate_or_end(kind, run, timeout=1500)
        if status.get("phase") == "AwaitingApproval":
            approve(kind, run)
            before.decisions[run] = decisions(kind, run)
        chaos.wait_finished(kind, run, 1500)
    verdict = chaos.check_invariants(kind, mlflow, runs, before)
    for row, run in rows:
        # The faulted stage's own end, then its run's (a later fault may have ended the run).
        entry = chaos.stage_entry(chaos.run_status(kind, run), row.injected_at)
        row.outcome = f"{row.injected_at} {entry.get('state')} (attempt {entry.get('attempt')}); {run}={verdict.outcomes[run]}"
        report(row, verdict)
    assert not verdict.violations, "\n".join(verdict.violations)


# --------------------------------------------------------------------------------------------
# c. The artifact store's volume turned read-only under a running MinIO (make chaos)

#: Where MinIO keeps the objects (minio-deployment.yaml's data volume).
MINIO_DATA = "/data"
#: An upload through MLflow's artifact proxy, the path a stage's log_model takes.
PROBE_ARTIFACT = "/api/2.0/mlflow-artifacts/artifacts/chaos-probes/read-only-store.txt"


def store_accepts_uploads(mlflow: httpx.Client) -> bool:
    with chaos.fresh_client(mlflow) as client:
        try:
            return client.put(PROBE_ARTIFACT, content=b"chaos probe\n", timeout=60).status_code == 200
        except httpx.HTTPError:
            return False


def component_restarts(kind: KindCluster, component: str) -> dict[str, int]:
    return {
        p["metadata"]["name"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses", []))
        for p in chaos.component_pods(kind, component)
    }


@pytest.mark.chaos_full
def test_c_a_read_only_artifact_volume_fails_full_train_clearly_and_registers_nothing(
    kind: KindCluster, mlflow: httpx.Client, started: list[str]
) -> None:
    before = chaos.baseline(mlflow)
    run = "chaos-read-only-store"
    started.append(run)
    # CI runs against the healthy store; the fault comes between CI and full-train.
    start_run(kind, run, retries=1)
    kind.kubectl(
        "wait", "--for=jsonpath={.status.phase}=AwaitingCD", f"cpr/{run}", "--timeout=15m", timeout=920
    )
    restarts = component_restarts(kind, "minio")
    assert len(restarts) == 1, f"expected one MinIO pod: {restarts}"
    pod = next(iter(restarts))
    pid = chaos.container_pid(kind, pod, "minio")
    row = Row(f"artifact store's volume remounted read-only under MinIO ({pod}:{MINIO_DATA})", "full-train")
    # A silent fault: MinIO stays Ready and serves reads; only writes fail (AccessDenied).
    chaos.remount_in_container(kind, pid, MINIO_DATA, read_only=True)
    try:
        assert not chaos.writable_in_container(kind, pid, MINIO_DATA), f"{MINIO_DATA} still writable"
        refused = not store_accepts_uploads(mlflow)
        kind.kubectl("patch", "cpr", run, "--type", "merge", "-p", '{"spec":{"continueToCD":true}}')
        status = wait_gate_or_end(kind, run, timeout=900)
        held = not chaos.writable_in_container(kind, pid, MINIO_DATA)
    finally:
        fault_end = time.monotonic()
        chaos.remount_in_container(kind, pid, MINIO_DATA, read_only=False)
        kind.wait_for(
            "MLflow to accept artifact uploads again", lambda: store_accepts_uploads(mlflow), 180, every=2
        )
        row.recovery_s = time.monotonic() - fault_end
    if status.get("phase") == "AwaitingApproval":  # the store's failure went unnoticed: end it
        kind.kubectl(
            "patch", "cpr", run, "--type", "merge", f"--as={REVIEWER}", "--as-group=claimops:operators",
            "-p", json.dumps({"spec": {"approval": {"decision": "Rejected", "comment": "chaos: store was read-only"}}}),
        )  # fmt: skip
        status = chaos.wait_finished(kind, run, 300)
    verdict = chaos.check_invariants(kind, mlflow, [run], before)
    report(row, verdict)
    assert refused, "MLflow accepted an artifact upload while the store's volume was read-only"
    assert held, "the volume was writable again before the run ended (MinIO restarted?)"
    assert component_restarts(kind, "minio") == restarts, "MinIO restarted: the fault was not silent"
    cond = chaos.succeeded_condition(status)
    assert cond.get("status") == "False", f"{run} did not fail with its artifact store read-only: {cond}"
    assert cond.get("reason") != "Rejected", (
        f"{run} passed full-train and evaluation with a read-only artifact store"
    )
    failed = chaos.stage_entry(status, "full-train")
    assert failed.get("state") == "Failed", f"full-train did not fail: {failed}"
    # The reason says MLflow; the message must point at its store, not at the server.
    assert "artifact store" in str(failed.get("message")), (
        f"full-train's message does not name the store: {failed}"
    )
    with chaos.fresh_client(mlflow) as client:
        assert champion_version(client) == before.champion
    assert not verdict.violations, "\n".join(verdict.violations)


# --------------------------------------------------------------------------------------------
# e. The node restarted and the chart upgraded with runs in flight (make chaos)


def api_answers(kind: KindCluster) -> bool:
    return kind.kubectl("get", "--raw", "/readyz", check=False, timeout=15).returncode == 0


def chart_ready(kind: KindCluster) -> bool:
    done = kind.kubectl(
        "wait", "--for=condition=Available", "deployment", "-l", f"app.kubernetes.io/instance={kind.release}",
        "--timeout=5s", check=False, timeout=30,
    )  # fmt: skip
    return done.returncode == 0


def stage_moves(kind: KindCluster, run: str, since: dict[str, Any]) -> bool:
    """The run has changed since `since` (a stage finished or started, or the run ended)."""
    status = chaos.run_status(kind, run)
    then = [(s.get("state"), s.get("attempt")) for s in since.get("stages") or ()]
    now = [(s.get("state"), s.get("attempt")) for s in status.get("stages") or ()]
    return now != then or chaos.is_finished(status)


def finish_and_check(
    kind: KindCluster, mlflow: httpx.Client, run: str, before: chaos.Baseline, row: Row
) -> None:
    """Approve the run at its gate (if it gets there), let it end, check, report."""
    status = wait_gate_or_end(kind, run, timeout=1500)
    if status.get("phase") == "AwaitingApproval":
        approve(kind, run)
        before.decisions[run] = decisions(kind, run)
    chaos.wait_finished(kind, run, 1500)
    verdict = chaos.check_invariants(kind, mlflow, [run], before)
    row.outcome = f"{verdict.outcome()} {row.outcome}".strip()
    report(row, verdict)
    assert not verdict.violations, "\n".join(verdict.violations)


def installed_chart() -> str:
    """The chart to upgrade with: this checkout's, which `make up` installed; CHAOS_CHART
    names another (the one installed, when this checkout's has moved on since)."""
    return os.environ.get("CHAOS_CHART") or str(REPO / "helm/claimops")


def set_max_concurrent_reconciles(kind: KindCluster, value: object) -> None:
    kind.helm(
        "upgrade", kind.release, installed_chart(), "-n", kind.namespace, "--reuse-values",
        "--set", f"operator.maxConcurrentReconciles={value}", "--wait", "--timeout", "10m",
    )  # fmt: skip


@pytest.mark.chaos_full
def test_e1_a_helm_upgrade_of_an_operator_setting_with_a_run_in_flight(
    kind: KindCluster, mlflow: httpx.Client, started: list[str]
) -> None:
    before = chaos.baseline(mlflow)
    run = "chaos-upgrade"
    started.append(run)
    start_run(kind, run, autoContinueToCD=True, retries=2)
    values = json.loads(kind.helm("get", "values", kind.release, "-n", kind.namespace, "-o", "json").stdout)
    previous = (values.get("operator") or {}).get("maxConcurrentReconciles", 20)
    # The operator restarts under a new ReplicaSet (its env changed) while quick-train runs,
    # and must pick the run up where it was.
    chaos.wait_stage_running(kind, run, "quick-train")
    fault = time.monotonic()
    row = Row("helm upgrade --reuse-values --set operator.maxConcurrentReconciles=10", "quick-train")
    try:
        set_max_concurrent_reconciles(kind, 10)
        snapshot = chaos.run_status(kind, run)
        kind.wait_for(f"{run} to move after the upgrade", lambda: stage_moves(kind, run, snapshot), 600)
        row.recovery_s = time.monotonic() - fault
    finally:  # back to the installed setting (another operator restart, after the measurement)
        set_max_concurrent_reconciles(kind, previous)
    finish_and_check(kind, mlflow, run, before, row)


@pytest.mark.chaos_full
def test_e2_a_node_restart_with_a_run_in_flight(
    kind: KindCluster, mlflow: httpx.Client, started: list[str]
) -> None:
    before = chaos.baseline(mlflow)
    run = "chaos-node"
    started.append(run)
    start_run(kind, run, autoContinueToCD=True, retries=2)
    # kind's one node container restarted while full-train runs: every container restarts,
    # the stage pod (restartPolicy Never) is lost.
    chaos.wait_stage_running(kind, run, "full-train", timeout=900)
    fault = time.monotonic()
    try:
        subprocess.run(
            ["docker", "restart", chaos.node_container(kind)],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        kind.wait_for("the API server after the node restart", lambda: api_answers(kind), 300, every=2)
        api_back = time.monotonic() - fault
    finally:
        kind.wait_for("the chart's Deployments Available", lambda: chart_ready(kind), 600, every=5)
        for component in ("postgresql", "minio", "mlflow", "operator"):
            chaos.wait_component_ready(kind, component, timeout=600)
        # The model servers restarted too (while MLflow was still down).
        stuck = chaos.restore_model_servers(kind)
    snapshot = chaos.run_status(kind, run)
    kind.wait_for(f"{run} to move after the node restart", lambda: stage_moves(kind, run, snapshot), 900)
    row = Row("docker restart of the kind node", "full-train", recovery_s=time.monotonic() - fault)
    row.outcome = (
        f"(API back after {api_back:.0f} s; model servers not Ready by themselves: {stuck or 'none'})"
    )
    finish_and_check(kind, mlflow, run, before, row)
    assert not stuck, f"model servers still not Ready 3 minutes after the node came back: {stuck}"
