"""Load on the kind cluster: 20 PipelineRuns submitted at once, on 2 cores. The operator runs
at most operator.maxConcurrentStageJobs stage Jobs; the rest queue, and runs leave the queue
in creation order. Every run goes through CI and CD training and evaluation and is rejected
at the approval gate by a reviewer (a finished run that deploys nothing, so 20 runs need no
20 model servers). Prints throughput (runs per hour), queue wait and the leading operator's
peak RSS; behind `make chaos` (marker chaos_full), as it takes most of an hour."""

from __future__ import annotations

import json
import re
import statistics
import time
from typing import Any

import pytest
import yaml

from claimops_stages.api_names import LABEL_RUN
from tests.e2e.conftest import KindCluster, pipelinerun
from tests.harness import figures

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.chaos_full, pytest.mark.timeout(4200)]

RUNS = 20
PREFIX = "load"
REVIEWER = ["--as=load-reviewer", "--as-group=claimops:operators"]


def _runs(kind: KindCluster) -> list[dict[str, Any]]:
    items = kind.get("cpr", "-l", "claimops.io/load-test=true")["items"]
    return sorted(items, key=lambda r: (r["metadata"]["creationTimestamp"], r["metadata"]["name"]))


def _leader_rss(kind: KindCluster) -> float | None:
    """The leading operator replica's resident memory (MiB), read from its /metrics through
    the API server's pod proxy."""
    lease = kind.get("lease", f"{kind.release}-operator")
    pod = lease["spec"].get("holderIdentity")
    if not pod:
        return None
    path = f"/api/v1/namespaces/{kind.namespace}/pods/{pod}:8080/proxy/metrics"
    done = kind.kubectl("get", "--raw", path, check=False, timeout=30)
    match = re.search(r"^process_resident_memory_bytes (\S+)$", done.stdout, re.MULTILINE)
    return float(match.group(1)) / 2**20 if match else None


def _load_jobs(kind: KindCluster) -> list[dict[str, Any]]:
    return [
        j for j in kind.get("jobs", "-l", LABEL_RUN)["items"]
        if j["metadata"]["labels"][LABEL_RUN].startswith(f"{PREFIX}-")
    ]  # fmt: skip


def _job_end(job: dict[str, Any]) -> str | None:
    """When the Job finished (its Complete or Failed condition), or None while it runs."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return str(cond["lastTransitionTime"])
    return None


def _peak_concurrency(jobs: list[dict[str, Any]]) -> int:
    """The most stage Jobs that existed unfinished at once: a slot is taken when the operator
    creates a Job and freed once it has seen the Job finish, so at one second an end counts
    before a start."""
    edges: list[tuple[str, int]] = []
    for job in jobs:
        end = _job_end(job)
        assert end, f"Job {job['metadata']['name']} has not finished"
        edges += [(job["metadata"]["creationTimestamp"], 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(edges):  # RFC 3339 UTC stamps sort as times; -1 before +1
        running += step
        peak = max(peak, running)
    return peak


def _first_job_start(run: dict[str, Any]) -> str:
    stages = run["status"]["stages"]
    return str(next(s["startedAt"] for s in stages if s.get("job")))


def test_twenty_runs_at_once_all_finish_queued_in_creation_order(kind: KindCluster) -> None:
    kind.kubectl("delete", "cpr", "-l", "claimops.io/load-test=true", "--wait=true", timeout=300)
    limit = int(
        json.loads(kind.helm("get", "values", kind.release, "-n", kind.namespace, "-a", "-o", "json").stdout)[
            "operator"
        ]["maxConcurrentStageJobs"]
    )
    docs = []
    for i in range(RUNS):
        doc = yaml.safe_load(
            pipelinerun(
                f"{PREFIX}-{i:02d}",
                f"{i:02d}" + "ab" * 19,
                autoContinueToCD=True,
                dataset={"rows": 4000, "seed": i, "window": "2025-01-01/2025-06-30", "drift": "none"},
                training={"nEstimators": 30, "maxDepth": 8, "quickSampleFraction": 0.2},
                # Small models must not fail evaluation against a bigger champion: every run
                # reaches the gate, where the reviewer rejects it.
                gates={"minAuc": 0.5, "maxAucDrop": 1.0},
            )
        )
        doc["metadata"]["labels"]["claimops.io/load-test"] = "true"
        docs.append(doc)
    submitted = time.monotonic()
    kind.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    rejected: set[str] = set()
    peak_rss = 0.0
    max_jobs = 0
    deadline = submitted + 3600
    while True:
        runs = _runs(kind)
        phases = {r["metadata"]["name"]: (r.get("status") or {}).get("phase") for r in runs}
        for name, phase in phases.items():
            if phase == "AwaitingApproval" and name not in rejected:
                kind.kubectl(
                    "patch", "cpr", name, "--type=merge", *REVIEWER,
                    "-p", json.dumps({"spec": {"approval": {"decision": "Rejected", "comment": "load test"}}}),
                )  # fmt: skip
                rejected.add(name)
        active = [j for j in _load_jobs(kind) if _job_end(j) is None]
        max_jobs = max(max_jobs, len(active))
        rss = _leader_rss(kind)
        peak_rss = max(peak_rss, rss or 0.0)
        if all(p in ("Succeeded", "Failed", "Rejected", "Cancelled") for p in phases.values()):
            break
        assert time.monotonic() < deadline, f"runs still going after an hour: {phases}"
        time.sleep(5)
    elapsed = time.monotonic() - submitted
    runs = _runs(kind)
    outcomes = {r["metadata"]["name"]: r["status"]["phase"] for r in runs}
    assert set(outcomes.values()) == {"Rejected"}, outcomes
    # The limit held: exactly, from every Job's creation and end, and as sampled every 5 s.
    jobs = _load_jobs(kind)
    assert len(jobs) >= RUNS * 6, f"{len(jobs)} stage Jobs for {RUNS} runs of 6 Job stages each"
    peak = _peak_concurrency(jobs)
    assert 0 < max_jobs <= peak <= limit, (max_jobs, peak, limit)
    # Fair: runs left the queue (started their first Job) in creation order.
    starts = [_first_job_start(r) for r in runs]
    assert starts == sorted(starts), list(zip([r["metadata"]["name"] for r in runs], starts, strict=True))
    per_hour = RUNS / (elapsed / 3600)
    queue_waits = [_queued_seconds(r) for r in runs]
    line = (
        f"load: {RUNS} runs (6 stage Jobs each, limit {limit}) in {elapsed / 60:.1f} min = {per_hour:.1f} runs/h; "
        f"queue wait p50 {statistics.median(queue_waits):.0f} s max {max(queue_waits):.0f} s; "
        f"peak stage Jobs {peak} (sampled {max_jobs}); leader RSS peak {peak_rss:.0f} MiB"
    )
    figures.record(line)
    kind.kubectl("delete", "cpr", "-l", "claimops.io/load-test=true", "--wait=false")


def _queued_seconds(run: dict[str, Any]) -> float:
    """Time a run's Job stages waited to start: from the run's creation (first stage) or the
    previous stage's end to the stage's Job creation (operator latency included, milliseconds)."""
    from datetime import datetime

    def at(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    waited = 0.0
    previous_end = at(run["metadata"]["creationTimestamp"])
    for entry in run["status"]["stages"]:
        if entry.get("job") and entry.get("startedAt"):
            waited += max((at(entry["startedAt"]) - previous_end).total_seconds(), 0.0)
        if entry.get("finishedAt"):
            previous_end = at(entry["finishedAt"])
    return waited
