"""What the UI's charts show, computed from the records they picture: the registered
versions' metrics (MLflow), a run's stage times (its status) and the claims stream's drift
history. Pure functions; `charts` draws what they return.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from claimops_stages import contract

from .charts import Bar, Event, LineChart, Point, Series, Timeline

#: The training metrics the model trend draws, in legend order.
TREND_METRICS = (("auc_roc", "AUC"), ("f1", "F1"), ("precision", "precision"), ("recall", "recall"))
ROLLED_BACK_TAG = "rolled_back_at"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# -- the model trend ---------------------------------------------------------------------


def version_marks(
    version: Mapping[str, Any], champion: str | None, challenger: str | None, rejected: set[str]
) -> tuple[str, ...]:
    """What a registered version is or went through, for its point on the trend."""
    number, tags = str(version["version"]), version.get("tags") or {}
    marks = []
    if number == champion:
        marks.append("champion")
    if number == challenger:
        marks.append("challenger")
    if tags.get(ROLLED_BACK_TAG):
        marks.append("rolled-back")
    if number in rejected:
        marks.append("rejected")
    if str(tags.get("evaluation_passed", "")).lower() == "false":
        marks.append("gate-failed")
    return tuple(marks)


def rejected_versions(runs: Iterable[Mapping[str, Any]]) -> set[str]:
    """Versions whose pipeline run's approval was rejected."""
    found = set()
    for run in runs:
        status = run.get("status") or {}
        version = (status.get("mlflow") or {}).get("modelVersion")
        if version and status.get("phase") == "Rejected":
            found.add(str(version))
    return found


def trend_run_ids(versions: Iterable[Mapping[str, Any]]) -> set[str]:
    """The MLflow runs the trend reads: each version's training and evaluation run."""
    ids = set()
    for version in versions:
        tags = version.get("tags") or {}
        ids |= {
            str(tags.get("training_run_id") or version.get("runId") or ""),
            str(tags.get("evaluation_run_id") or ""),
        }
    return {i for i in ids if i}


def model_trend(
    versions: Sequence[Mapping[str, Any]],
    runs_by_id: Mapping[str, Mapping[str, Any]],
    champion: str | None,
    challenger: str | None,
    rejected: set[str],
    max_auc_drop: float = contract.SPEC_DEFAULTS["gates.maxAucDrop"],
) -> tuple[LineChart, LineChart]:
    """Two charts over the registered versions, oldest first: the training metrics, and the
    evaluation's AUC delta against the champion of the day with its 95% interval."""
    ordered = sorted(versions, key=lambda v: int(v["version"]))
    categories = tuple(f"v{v['version']}" for v in ordered)
    metric_points: dict[str, list[Point]] = {key: [] for key, _ in TREND_METRICS}
    delta_points: list[Point] = []
    for version in ordered:
        tags = version.get("tags") or {}
        x, marks = f"v{version['version']}", version_marks(version, champion, challenger, rejected)
        training = (runs_by_id.get(str(tags.get("training_run_id") or version.get("runId") or "")) or {}).get(
            "metrics"
        ) or {}
        for key, _ in TREND_METRICS:
            value = training.get(key)
            if value is None and key == "auc_roc" and tags.get("auc_roc"):
                value = float(tags["auc_roc"])
            metric_points[key].append(Point(x, value, marks=marks))
        evaluation = (runs_by_id.get(str(tags.get("evaluation_run_id") or "")) or {}).get("metrics") or {}
        if evaluation.get("auc_delta") is not None:
            delta_points.append(
                Point(
                    x,
                    evaluation["auc_delta"],
                    evaluation.get("auc_delta_ci_low"),
                    evaluation.get("auc_delta_ci_high"),
                    marks,
                )
            )
    metrics = LineChart(
        id="model-trend",
        title="Registered versions: training metrics by version",
        description=(
            f"{len(categories)} registered versions, oldest first; AUC, F1, precision and recall on each "
            "version's held-out claims. Marked points are the champion, the challenger, versions rolled "
            "back, rejected at approval, or failed an evaluation gate."
        ),
        x_label="model version",
        y_label="metric value",
        categories=categories,
        series=tuple(Series(key, name, tuple(metric_points[key])) for key, name in TREND_METRICS),
        y_floor=0.0,
        y_ceiling=1.0,
    )
    delta = LineChart(
        id="auc-delta",
        title="Evaluation: AUC delta against the champion, with its 95% interval",
        description=(
            "Candidate AUC minus the champion's on the same fresh holdout (paired bootstrap interval as a "
            f"whisker); the dashed line is the gate, a drop of more than {max_auc_drop} fails it. Versions "
            "evaluated with no champion have no delta."
        ),
        x_label="model version",
        y_label="AUC delta",
        categories=tuple(p.x for p in delta_points),
        series=(Series("auc_delta", "AUC delta", tuple(delta_points)),),
        threshold=-max_auc_drop,
        threshold_label=f"gate: -{max_auc_drop}",
        zero_line=True,
    )
    return metrics, delta


# -- a run's timeline --------------------------------------------------------------------


def run_timeline(run: Mapping[str, Any], now: datetime) -> Timeline:
    """Each started stage's wait and run, in seconds from the run's start. A stage waits from
    the end of the stage before it (or the run's start) until its own start: queue, gate or a
    slow predecessor show up as a long light bar."""
    meta, status = run.get("metadata") or {}, run.get("status") or {}
    origin = parse_time(status.get("startedAt")) or parse_time(meta.get("creationTimestamp"))
    entries = {str(s.get("name")): s for s in status.get("stages") or []}
    bars: list[Bar] = []
    if origin is None:
        return Timeline("run-timeline", "Stage timeline", "", ())
    previous_end = 0.0
    for stage in contract.STAGES:
        entry = entries.get(stage.name)
        started = parse_time((entry or {}).get("startedAt"))
        if entry is None or started is None:
            continue
        finished = parse_time(entry.get("finishedAt"))
        running = finished is None
        start = (started - origin).total_seconds()
        end = ((finished or now) - origin).total_seconds()
        bars.append(
            Bar(
                row=stage.name,
                wait_from=min(previous_end, start),
                start=start,
                end=max(end, start),
                state=str(entry.get("state") or "Running"),
                running=running,
                detail=str(entry.get("reason") or ""),
            )
        )
        previous_end = max(previous_end, end)
    total = run_duration(run, now)
    return Timeline(
        "run-timeline",
        "Stage timeline",
        f"{len(bars)} stages started; each bar's light part is the wait before it started, the solid "
        f"part its run. Total {total:.0f} s."
        if total is not None
        else "",
        tuple(bars),
    )


def run_duration(run: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds from the run's start to its end (or to now while it is still going)."""
    meta, status = run.get("metadata") or {}, run.get("status") or {}
    start = parse_time(status.get("startedAt")) or parse_time(meta.get("creationTimestamp"))
    if start is None:
        return None
    end = parse_time(status.get("finishedAt")) or now
    return max((end - start).total_seconds(), 0.0)


# -- the claims stream's drift over time -------------------------------------------------


def drift_history(
    history: Sequence[Mapping[str, Any]], threshold: float, categorical: Sequence[str]
) -> tuple[LineChart, LineChart]:
    """PSI per feature over the stream's successive windows, and JS divergence per
    categorical feature; a vertical line where the drift profile changed. ``history`` is the
    stream's (`ClaimsStream.history`)."""
    windows = tuple(f"w{h['window']}" for h in history)
    events = tuple(
        Event(f"w{h['window']}", f"profile {h['profile']}")
        for before, h in itertools.pairwise(history)
        if before["profile"] != h["profile"]
    )
    features = list((history[-1]["psi"] if history else {}).keys())
    psi = LineChart(
        id="drift-psi",
        title="PSI per feature over successive windows",
        description=(
            f"Population stability index of each feature, one point per window of the live stream; the "
            f"dashed line is the {threshold} drift threshold; vertical lines mark where the stream's profile changed."
        ),
        x_label="window",
        y_label="PSI",
        categories=windows,
        series=tuple(
            Series(f, f, tuple(Point(f"w{h['window']}", h["psi"].get(f)) for h in history)) for f in features
        ),
        threshold=threshold,
        threshold_label=f"drift threshold {threshold}",
        y_floor=0.0,
        events=events,
    )
    js = LineChart(
        id="drift-js",
        title="Jensen-Shannon distance of the categorical features over successive windows",
        description="JS distance (base 2: 0 the same, 1 disjoint) of each categorical feature's distribution, per window.",
        x_label="window",
        y_label="JS distance",
        categories=windows,
        series=tuple(
            Series(f, f, tuple(Point(f"w{h['window']}", (h.get("js") or {}).get(f)) for h in history))
            for f in categorical
        ),
        y_floor=0.0,
        events=events,
    )
    return psi, js
