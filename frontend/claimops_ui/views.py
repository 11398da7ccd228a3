"""Pure helpers that turn resources into what pages and the JSON API show: run summaries and
statuses, ModelDeployments, failure toggles, MLflow and claims bodies, the DAG layout, stage
source code (read with `ast`, never imported) and stage config. Routers fetch, these shape.
Nothing here does I/O except reading the stage modules' source files."""

from __future__ import annotations

import ast
import functools
import importlib.util
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from claimops_stages import contract, release
from claimops_stages.api_names import REQUESTED_BY_RUN
from claimops_stages.approvals import ApprovalPolicy
from claimops_stages.contract import FAILURE_REASONS, FailureMode, StageInputs, StageKind

from .chart_views import run_duration, run_timeline
from .charts import duration_text, render_timeline
from .claims_stream import claim_records
from .errors import InvalidInput, NotFound
from .mlflow_gateway import RUN_ID

TERMINAL = {"Succeeded", "Failed", "Rejected", "Cancelled"}


def check_stage(name: str) -> str:
    if name not in contract.stage_names():
        raise NotFound(f"no stage {name!r}; stages: {', '.join(contract.stage_names())}")
    return name


# --------------------------------------------------------------------------------------------
# Health


def health_view(
    kube: Mapping[str, Any],
    mlflow_ok: bool,
    *,
    version: str,
    namespace: str,
    mlflow_url: str,
    read_only: bool,
) -> dict[str, Any]:
    """`/health`: degraded while a watch has not synced or failed, or MLflow does not answer."""
    ok = bool(kube["runsSynced"]) and not kube["errors"] and mlflow_ok
    return {
        "status": "ok" if ok else "degraded",
        "version": version,
        "namespace": namespace,
        "kubernetes": dict(kube),
        "mlflow": {"ok": mlflow_ok, "url": mlflow_url},
        "readOnly": read_only,
    }


# --------------------------------------------------------------------------------------------
# Runs


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def queue_positions(runs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Each Queued run's place in the operator's queue (1 = next): creation order, then name,
    as the operator admits them."""
    queued = [r for r in runs if (r.get("status") or {}).get("phase") == "Queued"]
    queued.sort(key=lambda r: (r["metadata"].get("creationTimestamp", ""), r["metadata"]["name"]))
    return {str(r["metadata"]["name"]): place for place, r in enumerate(queued, 1)}


def run_summary(
    run: Mapping[str, Any], queue_position: int | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """One row of the runs list (and the `/pipeline/{run_id}/status` head); ``queue_position``
    from :func:`queue_positions` when the run is Queued; the duration runs to ``now`` while
    the run is still going."""
    meta, spec, status = run.get("metadata", {}), run.get("spec") or {}, run.get("status") or {}
    commit = spec.get("commit") or {}
    succeeded = condition(run, "Succeeded")
    approval = status.get("approval") or {}
    evaluation = status.get("evaluation") or {}
    stages = status.get("stages") or []
    done = sum(1 for s in stages if s.get("state") in ("Succeeded", "Skipped"))
    phase = status.get("phase") or "Pending"
    seconds = run_duration(run, now or datetime.now(UTC))
    return {
        "name": meta.get("name", ""),
        "created": meta.get("creationTimestamp", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
        "sha": commit.get("sha", ""),
        "shortSha": str(commit.get("sha", ""))[:7],
        "message": str(commit.get("message", "")).split("\n", 1)[0],
        "author": commit.get("author", ""),
        "phase": phase,
        "terminal": phase in TERMINAL,
        "currentStage": status.get("currentStage", ""),
        "reason": succeeded.get("reason", ""),
        "conditionMessage": succeeded.get("message", ""),
        "approvalDecision": approval_decision(run),
        "approvedBy": approval.get("by", ""),
        "auc": evaluation.get("candidateAuc"),
        "modelVersion": (status.get("mlflow") or {}).get("modelVersion", ""),
        "failureInjection": list(spec.get("failureInjection") or []),
        "drift": (spec.get("dataset") or {}).get("drift", "none"),
        "progress": f"{done}/{len(stages)}" if stages else "",
        "queue": {**(status.get("queue") or {}), "position": queue_position} if phase == "Queued" else None,
        "durationSeconds": seconds,
        "duration": duration_text(seconds),
    }


def sort_runs(runs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(
        runs,
        key=lambda r: (r.get("metadata", {}).get("creationTimestamp", ""), r["metadata"]["name"]),
        reverse=True,
    )


def stage_entries(run: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(s.get("name")): dict(s) for s in (run.get("status") or {}).get("stages") or []}


def approval_decision(run: Mapping[str, Any]) -> str:
    """The gate's verdict as the operator tallied it (status.approval.decision). The admission
    policy resets spec.approval.decision to Pending after recording each ballot, so the spec
    only tells on a cluster without the chart's approvals policies."""
    status_decision = ((run.get("status") or {}).get("approval") or {}).get("decision")
    if status_decision:
        return str(status_decision)
    return str(((run.get("spec") or {}).get("approval") or {}).get("decision") or "Pending")


def actions_for(run: Mapping[str, Any]) -> dict[str, bool]:
    """Which buttons make sense now (the API server and the operator still decide)."""
    spec, status = run.get("spec") or {}, run.get("status") or {}
    phase = status.get("phase") or "Pending"
    live = phase not in TERMINAL and not spec.get("cancel")
    return {
        "continueToCD": live and phase == "AwaitingCD" and not spec.get("continueToCD"),
        "approve": live and phase == "AwaitingApproval" and approval_decision(run) == "Pending",
        "cancel": live,
    }


# --------------------------------------------------------------------------------------------
# The approval gate: its policy, the decisions so far, and who may decide


@dataclass(frozen=True)
class MayDecide:
    """What a user may cast on a run's gate; `reason` says why not (empty when both are allowed)."""

    approve: bool
    reject: bool
    reason: str = ""


def may_decide(
    policy: ApprovalPolicy,
    submitter: str,
    user: str,
    groups: Sequence[str],
    *,
    approved_by: Sequence[str] = (),
    verdict: str = "Pending",
) -> MayDecide:
    """Mirrors the chart's approvals ValidatingAdmissionPolicy (which still decides): the gate
    is open, the user is an approver by name or group, four-eyes keeps the submitter from
    approving (not from rejecting), and an approval counts once per user."""
    if verdict != "Pending":
        return MayDecide(False, False, f"The approval gate is already decided ({verdict.lower()}).")
    if not policy.is_approver(user, groups):
        mine = ", ".join(groups) or "none"
        why = f"{user} is not an approver of this run (approvers: {policy.approvers()}; you are in groups {mine})."
        return MayDecide(False, False, why)
    if policy.four_eyes and user == submitter:
        return MayDecide(
            False,
            True,
            f"{user} submitted this run: four-eyes needs another approver (you may still reject it).",
        )
    if user in approved_by:
        return MayDecide(False, True, f"{user} has already approved this run; approvals count once per user.")
    return MayDecide(True, True)


def approval_view(run: Mapping[str, Any], user: str | None, groups: Sequence[str]) -> dict[str, Any]:
    """The gate on the run page: the tally, the policy, the submitter, every recorded decision
    (status.approval.decisions, stamped by the operator; spec.decisions until it has seen them)
    and what `user` (signed in with `groups`) may cast."""
    spec, status = run.get("spec") or {}, run.get("status") or {}
    tallied = status.get("approval") or {}
    policy = ApprovalPolicy.parse(tallied.get("policy") or (spec.get("approval") or {}).get("policy"))
    submitter = spec.get("submitter") or {}
    recorded = tallied.get("decisions") or spec.get("decisions") or []
    decisions = [
        {
            "decision": str(d.get("decision", "")),
            "user": str(d.get("user", "")),
            "groups": [str(g) for g in d.get("groups") or ()],
            "comment": str(d.get("comment") or ""),
            "at": str(d.get("at") or ""),
        }
        for d in recorded
    ]
    approved_by = [str(u) for u in tallied.get("approvedBy") or ()]
    verdict = approval_decision(run)
    approvals = int(tallied.get("approvals", len(approved_by)))
    required = int(tallied.get("required", policy.quorum))
    may = (
        may_decide(
            policy, str(submitter.get("username", "")), user, groups, approved_by=approved_by, verdict=verdict
        )
        if user
        else MayDecide(False, False, "Sign in to decide.")
    )
    return {
        "decision": verdict,
        "approvals": approvals,
        "required": required,
        "approvedBy": approved_by,
        "summary": f"{approvals} of {required} — {policy.describe()}",
        "policy": policy,
        "submitter": {
            "username": str(submitter.get("username", "")),
            "groups": [str(g) for g in submitter.get("groups") or ()],
        },
        "decisions": decisions,
        "may": may,
    }


def run_status(run: Mapping[str, Any]) -> dict[str, Any]:
    """`/pipeline/{run_id}/status` and what every run mutation answers with."""
    status = run.get("status") or {}
    return {
        **run_summary(run),
        "spec": run.get("spec") or {},
        "stages": status.get("stages") or [],
        "conditions": status.get("conditions") or [],
        "approval": status.get("approval") or {},
        "evaluation": status.get("evaluation") or {},
        "shadow": status.get("shadow") or {},
        "mlflow": status.get("mlflow") or {},
        "actions": actions_for(run),
    }


def run_page_context(
    run: Mapping[str, Any],
    stage: str,
    user: str | None = None,
    groups: Sequence[str] = (),
    queue_position: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The run page's context: the stage asked for, else the run's current stage; the gate as
    `user` (in `groups`) sees it; the stage timeline up to ``now``."""
    if stage not in contract.stage_names():
        stage = str((run.get("status") or {}).get("currentStage") or "commit")
    now = now or datetime.now(UTC)
    return {
        "run": run_summary(run, queue_position, now),
        "timeline": render_timeline(run_timeline(run, now)),
        "spec": run.get("spec") or {},
        "status": run.get("status") or {},
        "dag": dag(run),
        "actions": actions_for(run),
        "approval": approval_view(run, user, groups),
        "stage": stage,
        "stages": contract.STAGES,
    }


def rollback_result(deployment: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": deployment["metadata"]["name"], "rollback": deployment["spec"].get("rollback", {})}


# --------------------------------------------------------------------------------------------
# ModelDeployments

_ROLE_ORDER = {"staging": 0, "shadow": 1, "production": 2}


def deployment_view(d: Mapping[str, Any]) -> dict[str, Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    model = spec.get("model") or {}
    ready = condition(d, "Ready")
    return {
        "name": d["metadata"]["name"],
        "role": spec.get("role"),
        "model": model.get("name"),
        "requestedVersion": model.get("version") or model.get("alias"),
        "servingVersion": status.get("servingVersion"),
        "ready": ready.get("status") == "True",
        "readyReason": ready.get("reason", ""),
        "readyMessage": ready.get("message", ""),
        "readyReplicas": status.get("readyReplicas", 0),
        "replicas": spec.get("replicas", 1),
        "url": status.get("url"),
        "protocols": status.get("protocols") or [],
        "history": status.get("history") or [],
        "rolledBackFrom": status.get("rolledBackFrom"),
        "rollback": spec.get("rollback"),
        "rolledBack": condition(d, "RolledBack"),
        "pipelineRun": (d["metadata"].get("annotations") or {}).get(REQUESTED_BY_RUN),
    }


def deployment_list(deployments: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """In pipeline order (staging, shadow, production), then by name."""
    views = [deployment_view(d) for d in deployments]
    return sorted(views, key=lambda v: (_ROLE_ORDER.get(str(v["role"]), 9), v["name"]))


# --------------------------------------------------------------------------------------------
# Failure toggles

#: What each failure mode does to a run (the seed's failure table).
FAILURE_EFFECTS: Mapping[FailureMode, str] = {
    FailureMode.SCHEMA_VALIDATION: "data-validation fails on a missing column",
    FailureMode.METRIC_REGRESSION: "the candidate is worse than the champion and the gate fails",
    FailureMode.MLFLOW_CONNECTION: "stages cannot reach MLflow",
    FailureMode.TRAINING_ERROR: "ci-tests fail",
}


def failure_list(defaults: Mapping[str, bool]) -> list[dict[str, Any]]:
    """Every failure mode and whether new runs get it (the ConfigMap's defaults)."""
    return [
        {
            "mode": m.value,
            "enabled": defaults.get(m.value, False),
            "effect": FAILURE_EFFECTS[m],
            "reason": FAILURE_REASONS[m].value,
        }
        for m in FailureMode
    ]


# --------------------------------------------------------------------------------------------
# MLflow and claims


def champion_view(
    model: str, champion: dict[str, Any] | None, challenger: dict[str, Any] | None, mlflow_ui: str
) -> dict[str, Any]:
    return {"model": model, "champion": champion, "challenger": challenger, "mlflowUi": mlflow_ui}


#: The metrics the MLflow page's run table shows, in column order.
MLFLOW_METRIC_COLUMNS = ("auc_roc", "f1", "accuracy", "candidate_auc", "ci_auc_roc")


#: Stage runs the explorer reads (newest first) before grouping them by pipeline run.
EXPLORER_RUNS = 300


@dataclass(frozen=True)
class ExplorerFilters:
    """The MLflow explorer's filters (query parameters), validated."""

    stage: str = ""
    status: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        if self.stage and self.stage not in contract.stage_names():
            raise InvalidInput(
                f"stage filter: no stage {self.stage!r}; stages: {', '.join(contract.stage_names())}"
            )

    def mlflow_filter(self) -> str:
        """The part MLflow's search does (stage and status); the version is matched per group."""
        parts = [f"tags.stage = '{self.stage}'"] if self.stage else []
        if self.status:
            parts.append(f"attributes.status = '{self.status}'")
        return " and ".join(parts)

    @property
    def active(self) -> bool:
        return bool(self.stage or self.status or self.version)


def run_versions(run: Mapping[str, Any]) -> set[str]:
    """The registered versions a stage run trained or evaluated. CI's quick-train tags
    ``model_version=ci-<sha>``, which names no registered version: left out."""
    tags = run.get("tags") or {}
    found = (str(tags.get(k) or "") for k in ("model_version", "candidate_version"))
    return {v for v in found if v.isdigit()}


def explorer_groups(runs: Sequence[Mapping[str, Any]], version: str = "") -> list[dict[str, Any]]:
    """Stage runs grouped by pipeline run (newest pipeline run first, its stages in the order
    they ran); with ``version``, only pipeline runs that trained or evaluated that version."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault(str((run.get("tags") or {}).get("pipeline_run") or ""), []).append(run)
    result = []
    for name, members in groups.items():
        members = sorted(members, key=lambda r: r.get("startTime") or 0)
        versions = set().union(*(run_versions(r) for r in members))
        if version and version not in versions:
            continue
        statuses = [str(r.get("status") or "") for r in members]
        result.append(
            {
                "pipelineRun": name,
                "runs": members,
                "started": min((r.get("startTime") or 0 for r in members), default=0),
                "versions": sorted(versions, key=int),
                "failed": statuses.count("FAILED"),
                "status": "FAILED"
                if "FAILED" in statuses
                else ("RUNNING" if "RUNNING" in statuses else "FINISHED"),
            }
        )
    return sorted(result, key=lambda g: g["started"], reverse=True)


def mlflow_overview(
    model: str,
    runs: list[dict[str, Any]],
    champion: dict[str, Any] | None,
    challenger: dict[str, Any] | None,
    versions: list[dict[str, Any]],
    error: str | None,
    filters: ExplorerFilters | None = None,
) -> dict[str, Any]:
    filters = filters or ExplorerFilters()
    return {
        "model": model,
        "runs": runs,
        "groups": explorer_groups(runs, filters.version),
        "filters": filters,
        "champion": with_release_record(champion),
        "challenger": with_release_record(challenger),
        "versions": versions,
        "error": error,
        "metric_keys": list(MLFLOW_METRIC_COLUMNS),
    }


def with_release_record(version: dict[str, Any] | None) -> dict[str, Any] | None:
    """A model version with `release` {href, digest} when it carries a release record (the
    tags promote-production writes: claimops.release.uri = runs:/<run>/<path>)."""
    if version is None:
        return None
    tags = version.get("tags") or {}
    uri, digest = str(tags.get(release.TAG_URI, "")), str(tags.get(release.TAG_DIGEST, ""))
    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    if not uri.startswith("runs:/") or not RUN_ID.match(run_id) or not path:
        return version
    return {**version, "release": {"href": f"/mlflow/artifacts/{run_id}/{path}", "digest": digest}}


def mlflow_run_detail(run: Mapping[str, Any], artifacts: list[dict[str, Any]], link: str) -> dict[str, Any]:
    return {**run, "artifacts": artifacts, "link": link}


def claims_sample(frame: pd.DataFrame, rows: int, seed: int, profile: str) -> dict[str, Any]:
    """Generated claims with the generator's own outcome (the live stream's have scores instead)."""
    records = claim_records(frame)
    for record, outcome in zip(records, frame["settlement"].astype(str), strict=True):
        record["settlement"] = outcome
    return {"rows": rows, "seed": seed, "profile": profile, "claims": records}


# --------------------------------------------------------------------------------------------
# DAG layout


@dataclass(frozen=True)
class Node:
    name: str
    title: str
    phase: str
    kind: str
    x: int
    y: int
    state: str
    detail: str


NODE_W, NODE_H = 182, 52
_ROWS = {"CI": 0, "CD": 1, "Deploy": 2}
_COL_W, _ROW_H, _PAD = 208, 92, 14


def dag(run: Mapping[str, Any] | None) -> dict[str, Any]:
    """Nodes (with their state) and edges of the twelve stages, laid out in three rows."""
    entries = stage_entries(run) if run else {}
    columns: dict[str, int] = {}
    nodes: list[Node] = []
    for stage in contract.STAGES:
        row = _ROWS[stage.phase.value]
        col = columns.get(stage.phase.value, 0)
        columns[stage.phase.value] = col + 1
        entry = entries.get(stage.name, {})
        # A stage outside the run (rollback) can be requested at any time.
        state = str(entry.get("state") or "Pending") if stage.in_run else "Available"
        detail = str(entry.get("reason") or "")
        nodes.append(
            Node(
                stage.name,
                stage.title,
                stage.phase.value,
                stage.kind.value,
                _PAD + col * _COL_W,
                _PAD + row * _ROW_H,
                state,
                detail,
            )
        )
    by_name = {n.name: n for n in nodes}
    linear = [s.name for s in contract.run_stages()]
    edges: list[dict[str, Any]] = []
    for a, b in itertools.pairwise(linear):
        na, nb = by_name[a], by_name[b]
        if na.y == nb.y:
            edges.append(
                {
                    "from": a,
                    "to": b,
                    "d": f"M{na.x + NODE_W},{na.y + NODE_H // 2} L{nb.x},{nb.y + NODE_H // 2}",
                }
            )
        else:  # wrap to the next row: down from the end of the row, back to its start
            x1, y1 = na.x + NODE_W // 2, na.y + NODE_H
            x2, y2 = nb.x + NODE_W // 2, nb.y
            mid = (y1 + y2) // 2
            edges.append({"from": a, "to": b, "d": f"M{x1},{y1} L{x1},{mid} L{x2},{mid} L{x2},{y2}"})
    last = by_name[linear[-1]]
    for side in (s.name for s in contract.STAGES if not s.in_run):
        rb = by_name[side]  # dashed: an operation on what the run's last stage left in place
        edges.append(
            {
                "from": last.name,
                "to": side,
                "dashed": True,
                "d": f"M{last.x + NODE_W},{last.y + NODE_H // 2} L{rb.x},{rb.y + NODE_H // 2}",
            }
        )
    width = _PAD * 2 + (max(columns.values()) - 1) * _COL_W + NODE_W
    height = _PAD * 2 + 2 * _ROW_H + NODE_H
    return {
        "nodes": nodes,
        "edges": edges,
        "width": width,
        "height": height,
        "nodeW": NODE_W,
        "nodeH": NODE_H,
    }


# --------------------------------------------------------------------------------------------
# Stage code (read, not imported: importing the stages pulls in MLflow and scikit-learn)


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise NotFound(f"module {module} is not installed")
    return Path(spec.origin)


@functools.lru_cache(maxsize=4)
def _parsed(module: str) -> tuple[str, ast.Module, Path]:
    path = _module_file(module)
    text = path.read_text()
    return text, ast.parse(text), path


def _function_source(module: str, function: str) -> dict[str, Any]:
    text, tree, path = _parsed(module)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = text.splitlines()[first - 1 : node.end_lineno]
            return {
                "module": module,
                "file": path.name,
                "function": function,
                "startLine": first,
                "endLine": node.end_lineno,
                "source": "\n".join(lines) + "\n",
            }
    raise NotFound(f"function {function} not found in {module}")


def stage_code(name: str) -> dict[str, Any]:
    """The source of what a stage runs: its stage function, or for a stage without a Job the
    operator's handler for that kind of stage."""
    stage = contract.stage(check_stage(name))
    found = _function_source(stage.module, stage.function)
    if stage.cli:
        where = "stage Job (python -m claimops_stages " + name + ")"
    else:
        where = f"operator ({stage.kind.value.lower()} stage: no Job)"
    return {"name": name, "title": stage.title, "kind": stage.kind.value, "runsIn": where, **found}


# --------------------------------------------------------------------------------------------
# Stage config


def _container(job: Mapping[str, Any]) -> dict[str, Any]:
    containers = job.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
    return dict(containers[0])


def _env(container: Mapping[str, Any]) -> list[dict[str, str]]:
    env = []
    for var in container.get("env") or []:
        if "value" in var:
            env.append({"name": var["name"], "value": str(var.get("value", ""))})
        else:  # never resolve references: show where the value comes from, not the secret
            ref = var.get("valueFrom") or {}
            kind = next(iter(ref), "valueFrom")
            target = ref.get(kind, {})
            env.append(
                {"name": var["name"], "value": f"<{kind} {target.get('name', '')}:{target.get('key', '')}>"}
            )
    return env


def stage_config(
    name: str, run: Mapping[str, Any] | None = None, job: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    stage = contract.stage(check_stage(name))
    result: dict[str, Any] = {
        "name": name,
        "title": stage.title,
        "phase": stage.phase.value,
        "kind": stage.kind.value,
        "description": stage.description,
    }
    if job is not None:
        container = _container(job)
        result["job"] = {
            "name": job.get("metadata", {}).get("name"),
            "image": container.get("image"),
            "command": container.get("command") or [],
            "args": container.get("args") or [],
            "env": _env(container),
            "resources": container.get("resources") or {},
            "activeDeadlineSeconds": job.get("spec", {}).get("activeDeadlineSeconds"),
        }
    elif stage.kind is StageKind.JOB:
        result["job"] = {
            "name": None,
            "command": ["python", "-m", "claimops_stages", name],
            "args": StageInputs().to_args(),
            "note": "defaults; a run's Job shows the arguments it was given",
        }
    if run is not None:
        result["run"] = run.get("metadata", {}).get("name")
        result["runSpec"] = run.get("spec") or {}
        result["stageStatus"] = stage_entries(run).get(name, {})
    return result
