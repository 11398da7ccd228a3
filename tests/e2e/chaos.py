"""Fault experiments on the kind cluster: the invariants every experiment checks after its
fault, the waits that tell a component is healthy again, and the results table.

An experiment starts runs, injects one fault, lets the runs end, restores what it broke and
then calls :func:`check_invariants`: it returns every violation found (an empty list is the
pass), so a test asserts on all of them at once and its message lists each broken promise.
Each experiment also appends one row to ``/tmp/chaos-results.tsv`` (see :class:`Row`) for the
fault-tolerance table.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from claimops_operator.conditions import RunReason
from claimops_operator.naming import job_name as job_name
from claimops_operator.pods import StartFailureReason
from claimops_stages.api_names import (
    LABEL_ATTEMPT,
    LABEL_COMPONENT,
    LABEL_MODEL_DEPLOYMENT,
    LABEL_RUN,
    LABEL_STAGE,
)
from claimops_stages.contract import Reason
from tests.e2e.conftest import MODEL, KindCluster, champion_version

RESULTS = Path("/tmp/chaos-results.tsv")
COLUMNS = (
    "fault", "injected_at", "outcome", "recovery_s", "runs_lost", "duplicate_jobs", "champion_intact",
    "overlapping_attempts", "champion",
)  # fmt: skip
PRODUCTION = f"{MODEL}-production"
#: The stages whose success a champion's source run must show (the gates of a promotion).
GATES = ("evaluate-vs-champion", "manual-approval", "shadow-monitor")
#: Succeeded=True reasons and in-progress reasons: never the reason a run *failed* with.
_NOT_FAILURES = {
    RunReason.RUNNING, RunReason.QUEUED, RunReason.AWAITING_CD, RunReason.AWAITING_APPROVAL, RunReason.SUCCEEDED,
    RunReason.DEPLOYED_TO_STAGING, RunReason.PENDING, RunReason.PASSED, RunReason.APPROVED,
    RunReason.DEPLOYING, RunReason.STAGING_READY, RunReason.NOT_REACHED, Reason.PASSED,
}  # fmt: skip
#: Every reason a run may fail with, as documented (README "Failure modes", RunReason, Reason,
#: StartFailureReason). Read from the installed packages, so a reason the operator adds (say
#: PodLost) counts as documented once it is in RunReason.
DOCUMENTED_FAILURES = frozenset(
    {str(r) for r in (*RunReason, *Reason, *StartFailureReason)} - {str(r) for r in _NOT_FAILURES}
)


@dataclass
class Row:
    """One line of the fault-tolerance table."""

    fault: str
    injected_at: str = ""
    outcome: str = ""
    recovery_s: float | None = None
    runs_lost: int = 0
    duplicate_jobs: int = 0
    champion_intact: bool | None = None
    overlapping_attempts: int = 0
    champion_note: str = ""

    def emit(self) -> None:
        values = [
            self.fault,
            self.injected_at,
            self.outcome,
            "" if self.recovery_s is None else f"{self.recovery_s:.1f}",
            str(self.runs_lost),
            str(self.duplicate_jobs),
            "" if self.champion_intact is None else str(self.champion_intact).lower(),
            str(self.overlapping_attempts),
            self.champion_note,
        ]
        line = "\t".join(values)
        print(f"\nCHAOS\t{line}")
        new = not RESULTS.exists()
        with RESULTS.open("a") as out:
            if new:
                out.write("\t".join(COLUMNS) + "\n")
            out.write(line + "\n")


@dataclass
class Baseline:
    """What the registry looked like before the fault."""

    champion: str | None
    versions: frozenset[str]
    decisions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Verdict:
    violations: list[str]
    runs_lost: int
    duplicate_jobs: int
    overlapping_attempts: int
    champion_intact: bool
    #: What happened to the champion: "unchanged v3", "v3 -> v4 by RUN (all gates passed)".
    champion_note: str
    outcomes: dict[str, str]

    def outcome(self) -> str:
        return ",".join(f"{run}={what}" for run, what in self.outcomes.items())


# --------------------------------------------------------------------------------------------
# Reading the cluster and MLflow


def run_status(kind: KindCluster, run: str) -> dict[str, Any]:
    return dict(kind.get("cpr", run).get("status") or {})


def stage_entry(status: Mapping[str, Any], stage: str) -> dict[str, Any]:
    return dict(next((s for s in status.get("stages") or () if s["name"] == stage), {}))


def succeeded_condition(status: Mapping[str, Any]) -> dict[str, Any]:
    return dict(next((c for c in status.get("conditions") or () if c["type"] == "Succeeded"), {}))


def is_finished(status: Mapping[str, Any]) -> bool:
    return succeeded_condition(status).get("status") in ("True", "False")


def run_jobs(kind: KindCluster, run: str) -> list[dict[str, Any]]:
    return list(kind.get("jobs", "-l", f"{LABEL_RUN}={run}")["items"])


def job_pods(kind: KindCluster, job: str) -> list[dict[str, Any]]:
    return list(kind.get("pods", "-l", f"batch.kubernetes.io/job-name={job}")["items"])


def registry_versions(mlflow: httpx.Client) -> dict[str, dict[str, Any]]:
    """Every registered version of the model by number (empty when it is not registered)."""
    answer = mlflow.get(
        "/api/2.0/mlflow/model-versions/search",
        params={"filter": f"name='{MODEL}'", "max_results": 1000},
    )
    answer.raise_for_status()
    return {str(v["version"]): v for v in answer.json().get("model_versions", [])}


def fresh_client(mlflow: httpx.Client) -> httpx.Client:
    """A client to the same MLflow that keeps no connection alive: after MLflow restarted, a
    pooled connection to its old pod fails ("Server disconnected") however healthy it is now."""
    return httpx.Client(
        base_url=mlflow.base_url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
    )


def wait_mlflow(mlflow: httpx.Client, timeout: float = 180) -> bool:
    """True once MLflow answers /health through the port mapping (its pod Ready is not enough:
    the Service's endpoints follow a moment later)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mlflow_answers(mlflow):
            return True
        time.sleep(2)
    return False


def baseline(mlflow: httpx.Client) -> Baseline:
    with fresh_client(mlflow) as client:
        assert wait_mlflow(client), "MLflow does not answer before the experiment"
        return Baseline(champion_version(client), frozenset(registry_versions(client)))


def wait_stage_running(
    kind: KindCluster, run: str, stage: str, timeout: float = 600, *, ended_ok: bool = False
) -> str | None:
    """The name of the stage's pod once its container runs (the stage code is mid-flight);
    None when the run ended before, if `ended_ok` (else that fails the experiment)."""

    def probe() -> str | bool | None:
        status = run_status(kind, run)
        entry = stage_entry(status, stage)
        if ended_ok and is_finished(status) and entry.get("state") != "Succeeded":
            return True
        # Not reached (or over too soon): the fault cannot be injected where it was meant to.
        if entry.get("state") in ("Succeeded", "Failed") or is_finished(status):
            raise AssertionError(
                f"{run}: stage {stage} ended before the fault: {entry}; run {succeeded_condition(status)}"
            )
        if not entry.get("job"):
            return None
        for pod in job_pods(kind, entry["job"]):
            statuses = pod.get("status", {}).get("containerStatuses") or []
            if statuses and "running" in statuses[0].get("state", {}):
                return str(pod["metadata"]["name"])
        return None

    found = kind.wait_for(f"{run}: a running pod of {stage}", probe, timeout, every=1)
    return None if found is True else str(found)


def wait_finished(kind: KindCluster, run: str, timeout: float) -> dict[str, Any]:
    return dict(
        kind.wait_for(
            f"{run} to finish", lambda: (s := run_status(kind, run)) and is_finished(s) and s, timeout
        )
    )


# --------------------------------------------------------------------------------------------
# Components: fault and recovery


def component_pods(kind: KindCluster, component: str) -> list[dict[str, Any]]:
    return list(
        kind.get("pods", "-l", f"{LABEL_COMPONENT}={component},app.kubernetes.io/instance={kind.release}")[
            "items"
        ]
    )


def delete_component_pods(kind: KindCluster, component: str) -> list[str]:
    """Kill the component's pods at once (no graceful shutdown: a crash, not a rollout)."""
    names = [p["metadata"]["name"] for p in component_pods(kind, component)]
    assert names, f"no {component} pod to kill"
    kind.kubectl("delete", "pod", *names, "--grace-period=0", "--force", "--wait=false")
    return names


def wait_component_ready(
    kind: KindCluster, component: str, replaced: Iterable[str] = (), timeout: float = 300
) -> float:
    """Seconds until every pod of the component is Ready and none of `replaced` is left."""
    started = time.monotonic()
    gone = set(replaced)

    def probe() -> bool:
        pods = component_pods(kind, component)
        if not pods or any(p["metadata"]["name"] in gone for p in pods):
            return False
        return all(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
            for p in pods
        )

    kind.wait_for(f"{component} Ready again", probe, timeout, every=1)
    return time.monotonic() - started


def node_container(kind: KindCluster) -> str:
    """The docker container that is the kind cluster's (only) node."""
    return f"{kind.context.removeprefix('kind-')}-control-plane"


def on_node(kind: KindCluster, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command as root in the node's container, with the node's own tools (crictl,
    nsenter, mount): what a Chaos Mesh daemon does from the host."""
    done = subprocess.run(
        ["docker", "exec", node_container(kind), *command], capture_output=True, text=True, timeout=60
    )
    if check:
        assert done.returncode == 0, f"{command} on {node_container(kind)}: {done.stderr}"
    return done


def container_pid(kind: KindCluster, pod: str, container: str) -> int:
    """The node's process id of a running container of `pod` (through the CRI, as crictl sees it)."""
    sandboxes = on_node(
        kind, "crictl", "pods", "--name", pod, "--namespace", kind.namespace, "--state", "ready", "-q"
    ).stdout.split()
    assert sandboxes, f"no ready sandbox for pod {pod} on the node"
    ids = on_node(kind, "crictl", "ps", "--pod", sandboxes[0], "--name", container, "-q").stdout.split()
    assert ids, f"no running container {container} in pod {pod}"
    return int(json.loads(on_node(kind, "crictl", "inspect", ids[0]).stdout)["info"]["pid"])


def _in_mounts_of(pid: int, *command: str) -> tuple[str, ...]:
    # nsenter -m enters the container's mount namespace; --root=/ (opened before entering)
    # keeps the node's root, so the node's tools run there and the image needs none. The
    # container's view of a path is reached through /proc/PID/root.
    return ("nsenter", "-t", str(pid), "-m", "--root=/", *command)


def remount_in_container(kind: KindCluster, pid: int, path: str, *, read_only: bool) -> None:
    """Remount the volume mounted at `path` in the container read-only (or back read-write),
    as a kernel does to a filesystem after an I/O error: the process keeps running, its
    reads work, its writes fail with EROFS. Only that container's view changes."""
    mode = "ro" if read_only else "rw"
    # --no-canonicalize: resolving the path would lose the /proc/PID/root hop and name the
    # node's own (unmounted) path.
    on_node(
        kind,
        *_in_mounts_of(
            pid, "mount", "--no-canonicalize", "-o", f"remount,bind,{mode}", f"/proc/{pid}/root{path}"
        ),
    )


def writable_in_container(kind: KindCluster, pid: int, path: str) -> bool:
    """access(W_OK) as root: false only when the filesystem itself refuses writes."""
    done = on_node(kind, *_in_mounts_of(pid, "test", "-w", f"/proc/{pid}/root{path}"), check=False)
    return done.returncode == 0


def unready_model_servers(kind: KindCluster) -> list[str]:
    """The ModelDeployments whose Ready condition is not True."""
    unready = []
    for mdep in kind.get("mdep")["items"]:
        conds = (mdep.get("status") or {}).get("conditions") or []
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
            unready.append(str(mdep["metadata"]["name"]))
    return unready


def restore_model_servers(kind: KindCluster, timeout: float = 180) -> list[str]:
    """Wait until every model server is Ready again; those that are not within `timeout` get
    their pods restarted (so later experiments find them serving). Returns the names that did
    not recover by themselves."""
    deadline = time.monotonic() + timeout
    while (stuck := unready_model_servers(kind)) and time.monotonic() < deadline:
        time.sleep(5)
    for name in stuck:
        selector = f"{LABEL_MODEL_DEPLOYMENT}={name}"
        # What kept it from loading (printed with -s): the next experiment needs it serving.
        logs = kind.kubectl("logs", "-l", selector, "--tail=20", "--prefix", check=False)
        print(
            f"model server {name} not Ready after {timeout:.0f} s; its log ends:\n{logs.stdout}{logs.stderr}"
        )
        kind.kubectl("delete", "pod", "-l", selector, "--wait=false", check=False)
    if stuck:
        kind.wait_for(
            "model servers Ready after their restart", lambda: not unready_model_servers(kind), 300, every=5
        )
    return stuck


def mlflow_answers(mlflow: httpx.Client) -> bool:
    try:
        return mlflow.get("/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------------------------
# The invariants


def _ended_at(job: Mapping[str, Any]) -> str | None:
    for cond in job.get("status", {}).get("conditions") or ():
        if cond["type"] in ("Failed", "Complete") and cond["status"] == "True":
            return str(cond["lastTransitionTime"])
    return None


def overlapping_attempts(jobs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Stage attempts whose Job was created before the previous attempt's Job had ended."""
    by_stage: dict[str, list[Mapping[str, Any]]] = {}
    for job in jobs:
        by_stage.setdefault(str(job["metadata"]["labels"].get(LABEL_STAGE)), []).append(job)
    problems = []
    for stage, attempts in by_stage.items():
        attempts.sort(key=lambda j: int(j["metadata"]["labels"].get(LABEL_ATTEMPT) or 0))
        for earlier, later in itertools.pairwise(attempts):
            ended, created = _ended_at(earlier), str(later["metadata"]["creationTimestamp"])
            # RFC 3339 UTC with whole seconds sorts as text.
            if ended is None or created < ended:
                problems.append(
                    f"stage {stage}: Job {later['metadata']['name']} created at {created} while "
                    f"{earlier['metadata']['name']} was still running (ended {ended or 'not yet'})"
                )
    return problems


def check_invariants(
    kind: KindCluster,
    mlflow: httpx.Client,
    runs: Sequence[str],
    before: Baseline,
    in_progress: Mapping[str, str] | None = None,
) -> Verdict:
    """Every promise a fault must not break, for the runs the experiment started.

    `in_progress` names runs another experiment continues, with the Succeeded=Unknown reason
    they may rest at (say AwaitingCD); every other run must have ended."""
    violations: list[str] = []
    outcomes: dict[str, str] = {}
    runs_lost = duplicates = overlaps = 0
    statuses: dict[str, dict[str, Any]] = {}
    for run in runs:
        status = statuses[run] = run_status(kind, run)
        cond = succeeded_condition(status)
        outcomes[run] = f"{status.get('phase')}/{cond.get('reason')}"
        # 1. The run completed, or failed with a documented reason (never left hanging).
        if cond.get("status") == "True":
            if status.get("phase") != "Succeeded":
                violations.append(f"{run}: Succeeded=True but phase {status.get('phase')}")
        elif cond.get("status") == "False":
            if cond.get("reason") not in DOCUMENTED_FAILURES:
                runs_lost += 1
                violations.append(f"{run}: failed with undocumented reason {cond.get('reason')!r}: {cond}")
        elif (in_progress or {}).get(run) != cond.get("reason"):
            runs_lost += 1
            violations.append(f"{run}: not finished: {outcomes[run]} ({cond.get('message')})")
        # 2. Exactly one Job per (stage, attempt), named as the operator names them, and the
        # status points at the Job of the stage's last attempt.
        jobs = run_jobs(kind, run)
        keys = Counter(
            (j["metadata"]["labels"].get(LABEL_STAGE), j["metadata"]["labels"].get(LABEL_ATTEMPT))
            for j in jobs
        )
        for (stage, attempt), count in keys.items():
            if count > 1:
                duplicates += count - 1
                violations.append(f"{run}: {count} Jobs for stage {stage} attempt {attempt}")
        by_name = {j["metadata"]["name"]: j for j in jobs}
        # 2b. Attempts of one stage never run at once: the next attempt's Job is created only
        # after the previous one ended (its Failed/Complete condition, which the Job controller
        # sets once its pod has terminated; FailureTarget comes earlier, while it still runs).
        for problem in overlapping_attempts(jobs):
            overlaps += 1
            violations.append(f"{run}: {problem}")
        for job in jobs:
            labels = job["metadata"]["labels"]
            expected = job_name(run, str(labels.get(LABEL_STAGE)), int(labels.get(LABEL_ATTEMPT) or 0))
            if job["metadata"]["name"] != expected:
                violations.append(f"{run}: Job {job['metadata']['name']} is not named {expected}")
        for entry in status.get("stages") or ():
            # A cancel deletes the Job it stopped; a stage not reached has none.
            if not entry.get("job") or entry.get("state") in ("Pending", "Skipped", "Cancelled"):
                continue
            named = by_name.get(entry["job"])
            if named is None:
                violations.append(
                    f"{run}: stage {entry['name']} names Job {entry['job']}, which does not exist"
                )
            elif str(named["metadata"]["labels"].get(LABEL_ATTEMPT)) != str(entry.get("attempt")):
                violations.append(
                    f"{run}: stage {entry['name']} attempt {entry.get('attempt')} but Job {entry['job']} is attempt {named['metadata']['labels'].get(LABEL_ATTEMPT)}"
                )
        # 3. No approval lost: every decision recorded before the fault is still recorded, in
        # order, and status.approval tallies what spec.decisions holds.
        spec = kind.get("cpr", run)["spec"]
        # spec.decisions also records continue-to-CD and cancel requests; the gate counts votes.
        recorded = list(spec.get("decisions") or [])
        decisions = [d for d in recorded if d.get("decision") in ("Approved", "Rejected")]
        earlier = before.decisions.get(run, [])
        if recorded[: len(earlier)] != earlier:
            violations.append(f"{run}: decisions recorded before the fault changed: {earlier} -> {recorded}")
        approval = status.get("approval") or {}
        if decisions:
            # status.approval.decisions may list continue-to-CD requests too: compare the votes.
            seen = [
                (d.get("user"), d.get("decision"))
                for d in approval.get("decisions") or ()
                if d.get("decision") in ("Approved", "Rejected")
            ]
            wanted = [(d.get("user"), d.get("decision")) for d in decisions]
            if seen != wanted:
                violations.append(f"{run}: status.approval.decisions {seen} != spec.decisions {wanted}")
            approvers = list(
                dict.fromkeys(str(d.get("user")) for d in decisions if d.get("decision") == "Approved")
            )
            rejected = any(d.get("decision") == "Rejected" for d in decisions)
            # A decided gate takes no more votes, so the tally is every distinct approver.
            if not rejected and (approval.get("approvedBy"), approval.get("approvals")) != (
                approvers,
                len(approvers),
            ):
                violations.append(f"{run}: status.approval {approval} does not tally {decisions}")
    # 4. The champion is unchanged, or a version whose source run passed every gate.
    with fresh_client(mlflow) as client:
        more, champion_intact, champion_note = _registry_invariants(kind, client, statuses, before)
    violations += more
    return Verdict(violations, runs_lost, duplicates, overlaps, champion_intact, champion_note, outcomes)


def _read_registry(
    mlflow: httpx.Client, timeout: float = 120
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """(versions, champion), read again on an HTTP error until `timeout`: an experiment that
    restarted MLflow ends while its Service still sends the odd request to the pod going away,
    and the invariants are about what the registry holds, not about that moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return registry_versions(mlflow), champion_version(mlflow)
        except httpx.HTTPError as exc:
            if time.monotonic() >= deadline:
                raise
            print(f"MLflow's registry did not answer ({exc!r}); asking again")
            time.sleep(3)


def _registry_invariants(
    kind: KindCluster, mlflow: httpx.Client, statuses: Mapping[str, Mapping[str, Any]], before: Baseline
) -> tuple[list[str], bool, str]:
    """(violations, champion intact, what happened to it) of the registry and production."""
    violations: list[str] = []
    versions: dict[str, dict[str, Any]] = {}
    champion = before.champion
    if not wait_mlflow(mlflow):
        return ["MLflow does not answer /health after the experiment"], False, "unknown"
    try:
        versions, champion = _read_registry(mlflow)
    except httpx.HTTPError as exc:
        return (
            [f"MLflow's registry does not answer after the experiment: {exc!r}"],
            False,
            "unknown",
        )
    champion_intact = champion == before.champion
    champion_note = f"unchanged v{champion}" if champion_intact and champion else "unchanged (none)"
    if champion is None and before.champion is not None:
        violations.append(f"the champion alias (v{before.champion}) is gone")
        champion_note = f"v{before.champion} -> none"
    elif not champion_intact and champion is not None:
        tags = {t["key"]: t["value"] for t in versions.get(champion, {}).get("tags", [])}
        source = tags.get("promoted_by_pipeline_run") or tags.get("restored_by_pipeline_run") or ""
        source_status = statuses.get(source) or {}
        if source and not source_status:
            found = kind.kubectl("get", "cpr", source, "-o", "json", check=False)
            source_status = json.loads(found.stdout).get("status") or {} if found.returncode == 0 else {}
        champion_note = f"v{before.champion or '-'} -> v{champion} by {source or '?'}"
        failed_gates = [g for g in GATES if stage_entry(source_status, g).get("state") != "Succeeded"]
        if not source or failed_gates or tags.get("evaluation_passed") != "true":
            violations.append(
                f"champion moved {before.champion} -> {champion}, source run {source!r} did not pass "
                f"{failed_gates or 'evaluation_passed'} (tags {tags})"
            )
        else:
            champion_intact = True  # moved, by a run that earned it
            champion_note += " (all gates passed)"
    # 5. Production serves the champion.
    production = kind.kubectl("get", "mdep", PRODUCTION, "-o", "json", check=False)
    if production.returncode == 0:
        mdep = json.loads(production.stdout)
        model = mdep["spec"]["model"]
        # After a rollback spec.model still names the version it rolled back from; what the
        # server runs is status.servingVersion.
        serving = (mdep.get("status") or {}).get("servingVersion")
        served = str(serving) if serving is not None else str(model.get("version"))
        if champion is None or (model.get("alias") != "champion" and served != champion):
            violations.append(
                f"production ModelDeployment serves v{served} (spec {model}), champion is {champion}"
            )
    elif champion is not None and champion != before.champion:
        violations.append(f"champion moved to {champion} but there is no production ModelDeployment")
    # 6. The registry is intact: the model answers, no version vanished, all are READY, and
    # every version a run reported exists.
    if versions or before.versions:
        answer = mlflow.get("/api/2.0/mlflow/registered-models/get", params={"name": MODEL})
        if answer.status_code != 200:
            violations.append(f"registered-models/get answered {answer.status_code}: {answer.text[:300]}")
    missing = sorted(before.versions - set(versions))
    if missing:
        violations.append(f"registry lost versions {missing}")
    not_ready = {v: d.get("status") for v, d in versions.items() if d.get("status") != "READY"}
    if not_ready:
        violations.append(f"versions not READY: {not_ready}")
    for run, status in statuses.items():
        reported = str((status.get("mlflow") or {}).get("modelVersion") or "")
        if reported and reported not in versions:
            violations.append(f"{run} reports model version {reported}, which the registry does not have")
    return violations, champion_intact, champion_note
