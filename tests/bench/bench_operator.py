"""Operator overhead on the real control plane: how long after a stage Job completes does the
next stage's Job appear, with 1 and with 50 concurrent PipelineRuns; API writes per run; the
operator's peak RSS.

The stages themselves are not run: the node stand-in finishes each stage pod at once with a
passing result (``instant`` mode), so the figures are the control loop's own (Job controller +
operator), not training time. Runs stop at the approval gate.

    python tests/bench/bench_operator.py [--runs 1,50]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client, watch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from claimops_stages.api_names import (
    API_VERSION,
    LABEL_PART_OF,
    LABEL_STAGE,
    PART_OF,
    PIPELINE_RUN,
    RESOURCES,
)
from claimops_stages.contract import ResultStatus, StageResult, cli_stages
from tests.harness.control_plane import REPO_ROOT, ControlPlane
from tests.harness.node_standin import NodeStandIn
from tests.harness.operator_process import OperatorProcess

#: The Job stages a run goes through before the approval gate, in order.
MEASURED = [
    s.name for s in cli_stages() if s.name not in ("shadow-monitor", "promote-production", "rollback")
]


def instant_result(pod: dict[str, Any]) -> tuple[int, str]:
    stage = pod["metadata"]["labels"][LABEL_STAGE]
    result = StageResult(stage, ResultStatus.SUCCEEDED, "Passed", "bench stub", mlflow_run_id=f"run-{stage}")
    if stage == "full-train":
        result.model_version = "1"
    if stage == "evaluate-vs-champion":
        result.metrics = {"candidate_auc": 0.85}
    return 0, result.to_json()


class JobClock:
    """Watches Jobs and notes when each one was first seen and first seen complete."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.batch = client.BatchV1Api(api)
        self.namespace = namespace
        self.added: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> JobClock:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                self.batch.list_namespaced_job, self.namespace, resource_version=version, timeout_seconds=2
            )
            for event in stream:
                now = time.perf_counter()
                job = event["object"]
                version = job.metadata.resource_version
                self.added.setdefault(job.metadata.name, now)
                conditions = job.status.conditions or [] if job.status else []
                # The operator moves on at SuccessCriteriaMet, which comes before Complete.
                if any(
                    c.type in ("SuccessCriteriaMet", "Complete") and c.status == "True" for c in conditions
                ):
                    self.completed.setdefault(job.metadata.name, now)


def run_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": PIPELINE_RUN.kind,
        "metadata": {"name": name},
        "spec": {"commit": {"sha": "0123456789abcdef", "message": "bench"}, "autoContinueToCD": True},
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(plane: ControlPlane, workdir: Path, runs: int, namespace: str) -> dict[str, float]:
    plane.kubectl("create", "namespace", namespace)
    api = plane.api_client()
    operator = OperatorProcess(
        plane.kubeconfig,
        namespace,
        "http://127.0.0.1:9",
        workdir / namespace,
        # The control loop's own overhead: no stage-slot limit (the queue would add its wait).
        {"CLAIMOPS_SERVING_ENABLED": "false", "CLAIMOPS_MAX_CONCURRENT_STAGE_JOBS": "1000"},
    )
    operator.workdir.mkdir(parents=True)
    operator.start()
    clock = JobClock(api, namespace).start()
    started = time.perf_counter()
    try:
        names = [f"bench-{i:03d}" for i in range(runs)]
        plane.kubectl(
            "create",
            "-n",
            namespace,
            "-f",
            "-",
            input="\n---\n".join(json.dumps(run_manifest(n)) for n in names),
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            listing = json.loads(plane.kubectl("get", "cpr", "-n", namespace, "-o", "json").stdout)["items"]
            if sum((r.get("status") or {}).get("phase") == "AwaitingApproval" for r in listing) == runs:
                break
            time.sleep(0.5)
        else:
            phases = collections.Counter((r.get("status") or {}).get("phase") for r in listing)
            stuck = next(r for r in listing if (r.get("status") or {}).get("phase") != "AwaitingApproval")
            raise RuntimeError(
                f"runs did not reach AwaitingApproval in time: phases {dict(phases)}; "
                f"{stuck['metadata']['name']}: {json.dumps(stuck.get('status'))[:1500]}"
            )
        elapsed = time.perf_counter() - started
        time.sleep(1.0)  # let the last status writes land before counting
        metrics = urllib.request.urlopen(operator.metrics_url, timeout=5).read().decode()
        pid = operator.service.process.pid if operator.service and operator.service.process else 0
        peak_kib = int(
            next(
                line.split()[1]
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM")
            )
        )
    finally:
        clock.stop()
        operator.stop()
    writes = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("claimops_api_writes_total")
    )
    events = json.loads(plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    run_events = sum(
        int(e.get("count") or 1) for e in events if e["involvedObject"]["kind"] == PIPELINE_RUN.kind
    )
    gaps = []
    for name in names:
        for before, after in itertools.pairwise(MEASURED):
            done = clock.completed.get(f"{name}-{before}-1")
            nxt = clock.added.get(f"{name}-{after}-1")
            if done is not None and nxt is not None:
                gaps.append((nxt - done) * 1000)
    return {
        "runs": runs,
        "transitions": len(gaps),
        "p50_ms": percentile(gaps, 50),
        "p95_ms": percentile(gaps, 95),
        "mean_ms": statistics.fmean(gaps),
        "writes_per_run": (writes + run_events) / runs,
        "status_and_child_writes_per_run": writes / runs,
        "events_per_run": run_events / runs,
        "peak_rss_mib": peak_kib / 1024,
        "seconds_to_all_awaiting_approval": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", default="1,50", help="comma-separated concurrency levels")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="claimops-bench-operator-"))
    plane = ControlPlane.start(workdir / "cp")
    try:
        plane.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        for crd in (r.crd_name for r in RESOURCES):
            plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        standin = NodeStandIn(
            plane.api_client(),
            f"{LABEL_PART_OF}={PART_OF}",
            workdir=workdir / "node",
            instant=instant_result,
        )
        with standin:
            print(f"operator overhead (stage Job complete -> next stage Job created), stages {MEASURED}")
            for runs in [int(r) for r in args.runs.split(",")]:
                figures = measure(plane, workdir, runs, f"bench-{runs}")
                print(
                    f"  {runs:>3} concurrent run(s): p50 {figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms "
                    f"over {figures['transitions']} transitions (target p95 < 500 ms at 50); "
                    f"API writes/run {figures['writes_per_run']:.1f} "
                    f"({figures['status_and_child_writes_per_run']:.1f} status+children, "
                    f"{figures['events_per_run']:.1f} events; target <= 40); "
                    f"operator peak RSS {figures['peak_rss_mib']:.0f} MiB; "
                    f"all at the gate after {figures['seconds_to_all_awaiting_approval']:.1f} s"
                )
    finally:
        plane.stop()
        plane.remove()


if __name__ == "__main__":
    main()
