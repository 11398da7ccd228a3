"""Where a stage's time goes on the kind cluster, for one finished PipelineRun:
pod created -> container started (scheduling, image, sandbox) -> stage code's first log line
(Python start and imports) -> result written (the container's finish).

    python -m tests.e2e.stage_timings demo-3f9c2ab [--namespace claimops] [--context kind-claimops]

Prints a table of seconds per stage and the run's wall times (created -> AwaitingApproval from
the manual-approval stage's start, created -> Succeeded from the Succeeded condition).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from datetime import datetime
from typing import Any

from tests.e2e.conftest import KindCluster, _tools


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--namespace", default="claimops")
    parser.add_argument("--context", default="kind-claimops")
    args = parser.parse_args()
    tools = _tools()
    kind = KindCluster(tools["KUBECTL"], tools["HELM"], args.context, args.namespace, "claimops")
    run = kind.get("cpr", args.run)
    created = ts(run["metadata"]["creationTimestamp"])
    print(f"{'stage':22} {'pod->container':>15} {'container->code':>16} {'code->result':>13} {'total':>7}")
    for stage in run["status"]["stages"]:
        job = stage.get("job")
        if not job:
            continue
        pods = kind.get("pods", "-l", f"job-name={job}")["items"]
        if not pods:
            continue
        pod = pods[0]
        state = pod["status"]["containerStatuses"][0]["state"].get("terminated")
        if not state:
            continue
        pod_created, started, finished = (
            ts(pod["metadata"]["creationTimestamp"]),
            ts(state["startedAt"]),
            ts(state["finishedAt"]),
        )
        log = subprocess.run(
            [kind.kubectl_bin, "--context", args.context, "-n", args.namespace, "logs", "--timestamps", pod["metadata"]["name"]],
            capture_output=True, text=True, check=False,
        ).stdout.splitlines()  # fmt: skip
        code = ts(log[0].split()[0][:26] + "Z") if log else finished
        print(
            f"{stage['name']:22} {(started - pod_created).total_seconds():15.1f} "
            f"{(code - started).total_seconds():16.1f} {(finished - code).total_seconds():13.1f} "
            f"{(finished - pod_created).total_seconds():7.1f}"
        )
    gate: dict[str, Any] = next((s for s in run["status"]["stages"] if s["name"] == "manual-approval"), {})
    if gate.get("startedAt"):
        print(f"created -> AwaitingApproval: {(ts(gate['startedAt']) - created).total_seconds():.0f} s")
    done: dict[str, Any] = next(
        (c for c in run["status"].get("conditions", []) if c["type"] == "Succeeded"), {}
    )
    if done.get("status") == "True":
        print(f"created -> Succeeded: {(ts(done['lastTransitionTime']) - created).total_seconds():.0f} s")
    print(json.dumps({"phase": run["status"].get("phase")}))


if __name__ == "__main__":
    main()
