"""Prometheus metrics of the operator, served on `/metrics` (port from the configuration)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS_BY_PHASE = Gauge(
    "claimops_pipelineruns",
    "PipelineRuns by phase, as last seen by this operator.",
    ["phase"],
)
STAGE_DURATION = Histogram(
    "claimops_stage_duration_seconds",
    "Wall time of finished stage Jobs, from start to finish.",
    ["stage", "result"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
RECONCILE_DURATION = Histogram(
    "claimops_reconcile_duration_seconds",
    "Time of one reconcile of a PipelineRun (reads, decision, writes).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
API_WRITES = Counter(
    "claimops_api_writes",
    "Write requests the operator sent to the Kubernetes API.",
    ["verb", "resource"],
)
RECONCILE_ERRORS = Counter(
    "claimops_reconcile_errors",
    "Reconciles that failed and were retried.",
    ["kind"],
)
LEADER = Gauge(
    "claimops_operator_leader",
    "1 on the replica that holds the leader Lease and reconciles, 0 on a standby.",
    ["identity"],
)
LEADER_TRANSITIONS = Counter(
    "claimops_operator_leader_acquisitions",
    "Times this replica took the leader Lease.",
)
STAGE_SLOTS_IN_USE = Gauge(
    "claimops_stage_slots_in_use",
    "Stage Jobs running or being started, out of operator.maxConcurrentStageJobs.",
)
RUNS_QUEUED = Gauge(
    "claimops_pipelineruns_queued",
    "PipelineRuns waiting for a free stage slot.",
)
QUEUE_WAIT = Histogram(
    "claimops_queue_wait_seconds",
    "Time a PipelineRun waited for a stage slot, from queued to its Job's creation.",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
