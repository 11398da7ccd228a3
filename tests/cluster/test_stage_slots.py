"""Admission of work on the real control plane: with one stage slot, three runs created at
once run their stage Jobs one at a time, wait visibly in phase Queued, leave the queue in
creation order, and keep both the limit and the order across an operator restart.

Each run's only Job is its ci-tests, failing at once (failure injection TrainingError, no
retry): the test is about the slots, and a short Job keeps it short."""

from __future__ import annotations

import json
import queue
import time
from typing import Any

import pytest

from claimops_stages.api_names import LABEL_RUN
from tests.cluster.test_operator import _ApiWatch, condition, create, get_run, run_manifest
from tests.conftest import OperatorFactory
from tests.harness.control_plane import ControlPlane
from tests.harness.node_standin import NodeStandIn

pytestmark = pytest.mark.cluster

RUNS = ("first", "second", "third")


def test_one_slot_runs_one_stage_job_at_a_time_in_creation_order_across_a_restart(
    control_plane: ControlPlane,
    namespace: str,
    node_standin: NodeStandIn,
    start_operator: OperatorFactory,
) -> None:
    from kubernetes import client

    cp = control_plane
    operator = start_operator(namespace, CLAIMOPS_MAX_CONCURRENT_STAGE_JOBS="1")
    events: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue()
    watch = _ApiWatch(
        "job", client.BatchV1Api(cp.api_client()).list_namespaced_job, events, namespace=namespace
    )
    watch.start()
    time.sleep(1)
    # Back to back, as a user applying a file of runs would: the operator may reconcile a later
    # one first, and must still start them in creation order (names in the same second sort
    # in creation order here).
    for name in RUNS:
        manifest = run_manifest(
            name, model={"name": f"slots-{name}"}, failureInjection=["TrainingError"], retries=0
        )
        create(cp, namespace, manifest)

    active: set[str] = set()
    most_at_once = 0
    first_job_of: dict[str, str] = {}
    order: list[str] = []
    saw_queued: dict[str, dict[str, Any]] = {}
    restarted = False
    deadline = time.monotonic() + 300
    try:
        while True:
            assert time.monotonic() < deadline, (
                f"runs did not all reach the CD gate; jobs {order}\n{operator.log()[-3000:]}"
            )
            try:
                _, kind, job = events.get(timeout=0.5)
            except queue.Empty:
                kind, job = "", {}
            if job:
                name = job["metadata"]["name"]
                done = any(c["status"] == "True" for c in (job.get("status") or {}).get("conditions") or [])
                if kind == "DELETED" or done:
                    active.discard(name)
                else:
                    active.add(name)
                    run = job["metadata"]["labels"][LABEL_RUN]
                    if run not in first_job_of:
                        first_job_of[run] = name
                        order.append(run)
                most_at_once = max(most_at_once, len(active))
            for name in RUNS:
                if name not in saw_queued:
                    run = get_run(cp, namespace, name)
                    if (run.get("status") or {}).get("phase") == "Queued":
                        saw_queued[name] = run
            if not restarted and len(order) == 2:
                # The second run holds the slot: a restarted operator must find it in use and
                # the third run still queued (seeded from the cluster, not from memory).
                operator.kill()
                operator.start()
                restarted = True
            phases = {n: (get_run(cp, namespace, n).get("status") or {}).get("phase") for n in RUNS}
            if all(p == "Failed" for p in phases.values()):
                break
    finally:
        watch.stopped.set()
    assert most_at_once == 1, most_at_once
    assert order == list(RUNS)
    assert restarted
    # The later runs waited where everyone can see it: phase, condition and status.queue.
    assert {"second", "third"} <= set(saw_queued), sorted(saw_queued)
    for run in saw_queued.values():
        summary = condition(run, "Succeeded")
        assert (summary["status"], summary["reason"]) == ("Unknown", "Queued"), summary
        assert "at most 1 stage Jobs" in summary["message"]
        assert run["status"]["queue"]["limit"] == 1
    for name in RUNS:  # each ended with its own documented reason, not a slot problem
        assert condition(get_run(cp, namespace, name), "Succeeded")["reason"] == "CITestsFailed"
    reasons = json.loads(cp.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert any(e["reason"] == "RunQueued" and e["involvedObject"]["name"] == "third" for e in reasons)
