"""Leader failover of the operator on the real control plane: two replicas with leader
election, the leader SIGKILLed N times (each time the killed one comes back as a standby);
prints the time from the kill until the standby holds the Lease and its /metrics says it
leads, and the time a clean stop (SIGTERM) takes to hand over.

The peer, controller-runtime's Lease election, is shown by its default timings (15 s lease,
10 s renew deadline, 2 s retry: a SIGKILLed leader is replaced after 15-17 s); it is not run
here (no Go operator in this repository).

    python tests/bench/bench_failover.py [--kills 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from claimops_operator.config import OperatorConfig
from claimops_stages.api_names import RESOURCES
from tests.harness.control_plane import REPO_ROOT, ControlPlane
from tests.harness.operator_process import OperatorProcess

LEASE = "claimops-operator"


def holder(plane: ControlPlane, namespace: str) -> str:
    done = plane.kubectl("get", "lease", LEASE, "-n", namespace, "-o", "json", check=False)
    return str(json.loads(done.stdout)["spec"].get("holderIdentity") or "") if done.returncode == 0 else ""


def leads(operator: OperatorProcess, identity: str) -> bool:
    try:
        with urllib.request.urlopen(operator.metrics_url, timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return False
    return f'claimops_operator_leader{{identity="{identity}"}} 1.0' in text


def wait_leader(plane: ControlPlane, namespace: str, identity: str, operator: OperatorProcess) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 60:
        if holder(plane, namespace) == identity and leads(operator, identity):
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit(f"{identity} did not take over within 60 s:\n{operator.log()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=7)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="claimops-bench-failover-"))
    plane = ControlPlane.start(workdir / "cp")
    namespace = "bench-failover"
    replicas: dict[str, OperatorProcess] = {}
    try:
        plane.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        for crd in (r.crd_name for r in RESOURCES):
            plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        plane.kubectl("create", "namespace", namespace)
        for identity in ("op-a", "op-b"):
            replicas[identity] = OperatorProcess(
                plane.kubeconfig,
                namespace,
                "http://127.0.0.1:9",
                workdir / identity,
                {
                    "CLAIMOPS_LEADER_ELECTION_LEASE": LEASE,
                    "CLAIMOPS_LEADER_ELECTION_NAMESPACE": namespace,
                    "CLAIMOPS_POD_NAME": identity,
                },
            )
            replicas[identity].workdir.mkdir(parents=True)
            replicas[identity].start()
        wait_leader(plane, namespace, "op-a", replicas["op-a"])
        leader, kills = "op-a", []
        for _ in range(args.kills):
            standby = "op-b" if leader == "op-a" else "op-a"
            time.sleep(3)  # the standby has watched the renewals for a while
            replicas[leader].kill()
            kills.append(wait_leader(plane, namespace, standby, replicas[standby]))
            replicas[leader].start()
            leader = standby
        time.sleep(3)
        standby = "op-b" if leader == "op-a" else "op-a"
        replicas[leader].stop()
        handover = wait_leader(plane, namespace, standby, replicas[standby])
        timings = OperatorConfig()
        print(
            f"lease {timings.lease_duration_seconds} s, renew deadline {timings.lease_renew_deadline_seconds} s, "
            f"retry {timings.lease_retry_period_seconds} s"
        )
        print(
            f"failover after SIGKILL (n={len(kills)}): p50 {statistics.median(kills):.1f} s, "
            f"max {max(kills):.1f} s; all {[round(k, 1) for k in kills]}"
        )
        print(f"handover after SIGTERM: {handover:.1f} s")
        print("peer: controller-runtime defaults (15 s lease, 10 s renew, 2 s retry): 15-17 s after SIGKILL")
    finally:
        for operator in replicas.values():
            operator.stop()
        plane.stop()


if __name__ == "__main__":
    main()
