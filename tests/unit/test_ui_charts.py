"""The UI's server-drawn charts: what they show is the data they are given."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from claimops_ui import chart_views, charts, comparison, views
from claimops_ui.errors import InvalidInput

RUN_IDS = {v: f"{v:x}" * 32 for v in range(1, 5)}


def _versions() -> list[dict[str, object]]:
    return [
        {
            "version": str(v),
            "tags": {
                "training_run_id": RUN_IDS[v][:32],
                "evaluation_run_id": ("e" * 31 + str(v)),
                **({"rolled_back_at": "2026-12-01T00:00:00Z"} if v == 3 else {}),
                **({"evaluation_passed": "false"} if v == 4 else {}),
            },
        }
        for v in (3, 1, 4, 2)
    ]


def _runs() -> dict[str, dict[str, object]]:
    runs: dict[str, dict[str, object]] = {}
    for v in range(1, 5):
        runs[RUN_IDS[v][:32]] = {
            "metrics": {"auc_roc": round(0.8 + v / 100, 2), "f1": 0.7, "precision": 0.6, "recall": 0.5}
        }
        if v > 1:
            runs["e" * 31 + str(v)] = {
                "metrics": {"auc_delta": -0.01 * v, "auc_delta_ci_low": -0.02 * v, "auc_delta_ci_high": 0.0}
            }
    return runs


def test_the_model_trend_has_one_point_per_version_oldest_first_with_roles_marked() -> None:
    trend, delta = chart_views.model_trend(_versions(), _runs(), "2", None, {"1"})
    assert trend.categories == ("v1", "v2", "v3", "v4")
    auc = trend.series[0]
    assert [p.y for p in auc.points] == [0.81, 0.82, 0.83, 0.84]
    assert {p.x: p.marks for p in auc.points} == {
        "v1": ("rejected",),
        "v2": ("champion",),
        "v3": ("rolled-back",),
        "v4": ("gate-failed",),
    }
    # Only versions evaluated against a champion have a delta; the gate is the max AUC drop.
    assert delta.categories == ("v2", "v3", "v4")
    assert delta.series[0].points[0].low == -0.04
    assert delta.threshold == -0.02

    svg = str(charts.render_line_chart(trend))
    assert len(re.findall(r'<circle class="point[^"]*" data-x="v\d"', svg)) == 16
    assert re.search(r'data-x="v2" data-value="0.82" data-marks="champion"', svg)
    assert '<title id="model-trend-title">' in svg
    assert "<table>" in svg


def test_rejected_versions_come_from_rejected_pipeline_runs() -> None:
    runs: list[dict[str, Any]] = [
        {"status": {"phase": "Rejected", "mlflow": {"modelVersion": "5"}}},
        {"status": {"phase": "Succeeded", "mlflow": {"modelVersion": "6"}}},
        {"status": {"phase": "Rejected"}},
    ]
    assert chart_views.rejected_versions(runs) == {"5"}


def _run(stages: list[dict[str, str]], finished: str | None = None) -> dict[str, object]:
    status: dict[str, object] = {"startedAt": "2026-12-02T10:00:00Z", "stages": stages}
    if finished:
        status["finishedAt"] = finished
    return {"metadata": {"name": "r", "creationTimestamp": "2026-12-02T09:59:59Z"}, "status": status}


def test_the_timeline_shows_each_stages_wait_and_run_and_a_running_stage_up_to_now() -> None:
    run = _run(
        [
            {
                "name": "ci-tests",
                "state": "Succeeded",
                "startedAt": "2026-12-02T10:00:02Z",
                "finishedAt": "2026-12-02T10:00:12Z",
            },
            {"name": "data-validation", "state": "Running", "startedAt": "2026-12-02T10:01:12Z"},
        ]
    )
    now = datetime(2026, 12, 2, 10, 2, 12, tzinfo=UTC)
    timeline = chart_views.run_timeline(run, now)
    first, second = timeline.bars
    assert (first.wait_from, first.start, first.end) == (0.0, 2.0, 12.0)
    # It waited a minute after ci-tests ended (a queue, say) and has run for a minute since.
    assert (second.wait_from, second.start, second.end, second.running) == (12.0, 72.0, 132.0, True)
    svg = str(charts.render_timeline(timeline))
    assert 'data-stage="data-validation" data-wait="60.0" data-start="72.0" data-duration="60.0"' in svg
    assert chart_views.run_duration(run, now) == 132.0
    assert chart_views.run_duration(_run([], "2026-12-02T10:04:05Z"), now) == 245.0
    assert charts.duration_text(245.0) == "4 min 05 s"


def test_drift_history_marks_the_window_where_the_profile_changed() -> None:
    history = [
        {
            "window": w,
            "profile": "none" if w < 3 else "severe",
            "psi": {"billed_amount": 0.01 * w},
            "js": {"cpt_bucket": 0.1},
        }
        for w in range(1, 6)
    ]
    psi, js = chart_views.drift_history(history, 0.2, ["cpt_bucket"])
    assert psi.categories == ("w1", "w2", "w3", "w4", "w5")
    assert [(e.x, e.label) for e in psi.events] == [("w3", "profile severe")]
    assert psi.threshold == 0.2
    assert [s.key for s in js.series] == ["cpt_bucket"]
    svg = str(charts.render_line_chart(psi))
    assert 'class="event" data-x="w3"' in svg
    assert 'class="threshold" data-value="0.2"' in svg


def test_an_empty_chart_says_so_instead_of_drawing_axes() -> None:
    trend, _ = chart_views.model_trend([], {}, None, None, set())
    psi, _ = chart_views.drift_history([], 0.2, ["cpt_bucket"])
    assert "Nothing to draw yet" in str(charts.render_line_chart(trend))
    assert "Nothing to draw yet" in str(charts.render_line_chart(psi))


def test_ticks_are_round_and_cover_the_range() -> None:
    assert charts.nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = charts.nice_ticks(-0.043, 0.012)
    assert ticks[0] <= -0.043
    assert ticks[-1] >= 0.012


# -- compare before approving -------------------------------------------------------------------

CANDIDATE_RUN, CHAMPION_RUN = "c" * 32, "d" * 32


def _compare_inputs(evaluated: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    evaluation = {
        "candidateAuc": 0.86,
        "championAuc": 0.87,
        "championVersion": "2",
        "delta": -0.01,
        "ciLow": -0.025,
        "ciHigh": 0.004,
        "passed": True,
        "reason": "Passed",
    }
    run = {
        "spec": {"gates": {"minAuc": 0.8, "maxAucDrop": 0.02}},
        "status": {"mlflow": {"modelVersion": "3"}, **({"evaluation": evaluation} if evaluated else {})},
    }
    versions = [
        {"version": "3", "runId": CANDIDATE_RUN, "aliases": ["challenger"]},
        {"version": "2", "runId": CHAMPION_RUN, "aliases": []},
        {"version": "1", "runId": "e" * 32, "aliases": ["champion"]},
    ]

    def training(auc: float, trees: str, window: str) -> dict[str, Any]:
        return {
            "metrics": {
                "auc_roc": auc,
                "f1": 0.7,
                "importance_billed_amount": auc / 2,
                "importance_patient_age": 0.1,
                "shap_mean_abs_billed_amount": 0.2,
            },
            "params": {"n_estimators": trees, "max_depth": "8", "train_rows": "4000"},
            "tags": {"dataset_window": window, "seed": "42"},
        }

    runs = {CANDIDATE_RUN: training(0.86, "100", "2024-Q1"), CHAMPION_RUN: training(0.87, "50", "2023-Q4")}
    return run, versions, runs


def test_compare_puts_the_candidate_beside_the_champion_it_was_evaluated_against() -> None:
    run, versions, runs = _compare_inputs()
    view = comparison.compare_view(run, versions, runs, champion_alias="1")
    assert (view["candidate"]["version"], view["champion"]["version"]) == ("3", "2")
    assert "moved to v1" in view["notes"][0]
    auc = next(r for r in view["metrics"] if r["name"] == "auc_roc")
    assert (auc["candidate"], auc["champion"]) == (0.86, 0.87)
    assert abs(auc["diff"] + 0.01) < 1e-9
    params = {r["name"]: r for r in view["params"]}
    assert params["n_estimators"]["differs"]
    assert not params["max_depth"]["differs"]
    assert "train_rows" not in params
    dataset = {r["name"]: r for r in view["dataset"]}
    assert (dataset["dataset_window"]["candidate"], dataset["dataset_window"]["champion"]) == (
        "2024-Q1",
        "2023-Q4",
    )
    gates = {g["name"]: g for g in view["gates"]}
    assert gates["minAuc"]["passed"]
    assert gates["maxAucDrop"]["passed"]
    assert "0.8000" in gates["minAuc"]["rule"]
    assert "0.0200" in gates["maxAucDrop"]["rule"]
    drawn = str(charts.render_interval(view["interval"]))
    assert 'data-value="-0.01"' in drawn
    assert 'data-low="-0.025"' in drawn
    assert '<g class="threshold" data-value="-0.02">' in drawn
    bars = str(charts.render_paired_bars(view["importance"]))
    # Two features, two sides each, the most important first.
    assert re.findall(r'data-row="([^"]+)"', bars) == ["billed_amount", "patient_age"]
    assert len(re.findall(r'<rect class="side c\d"', bars)) == 4
    assert "style=" not in bars


def test_compare_before_the_evaluation_uses_the_champion_alias() -> None:
    run, versions, runs = _compare_inputs(evaluated=False)
    view = comparison.compare_view(run, versions, runs | {"e" * 32: runs[CHAMPION_RUN]}, champion_alias="1")
    assert view["champion"]["version"] == "1"
    assert view["interval"] is None
    assert all(g["passed"] is None for g in view["gates"])
    none = comparison.compare_view(run, versions, runs, champion_alias=None)
    assert none["champion"] is None
    assert "no champion yet" in none["notes"][0]
    assert [r["champion"] for r in none["metrics"]] == [None] * len(comparison.METRICS)


# -- the MLflow explorer, grouped by pipeline run ---------------------------------------------


def _stage_run(
    pipeline_run: str, stage: str, start: int, status: str = "FINISHED", **tags: str
) -> dict[str, Any]:
    return {"runId": f"{start:032x}", "status": status, "startTime": start,
            "tags": {"pipeline_run": pipeline_run, "stage": stage, **tags}}  # fmt: skip


def test_explorer_groups_stage_runs_by_pipeline_run_newest_first_and_filters_by_version() -> None:
    runs = [
        _stage_run("a", "full-train", 3, model_version="1"),
        _stage_run("a", "quick-train", 2, model_version="ci-1a2b3c4"),
        _stage_run("b", "quick-train", 5, model_version="ci-9f8e7d6"),
        _stage_run("b", "full-train", 6, "FAILED"),
        _stage_run("a", "evaluate-vs-champion", 4, candidate_version="1"),
        _stage_run("c", "full-train", 8, model_version="10"),
        _stage_run("c", "evaluate-vs-champion", 9, candidate_version="10", model_version="10"),
        _stage_run("c", "full-train", 7, "RUNNING", model_version="2"),
    ]
    groups = views.explorer_groups(runs)
    assert [g["pipelineRun"] for g in groups] == ["c", "b", "a"]
    a = groups[2]
    # In the order the stages ran; CI's ci-<sha> tag names no registered version.
    assert [r["tags"]["stage"] for r in a["runs"]] == ["quick-train", "full-train", "evaluate-vs-champion"]
    assert (a["versions"], a["status"], a["failed"]) == (["1"], "FINISHED", 0)
    assert (groups[1]["status"], groups[1]["failed"], groups[1]["versions"]) == ("FAILED", 1, [])
    assert (groups[0]["status"], groups[0]["versions"]) == ("RUNNING", ["2", "10"])
    assert [g["pipelineRun"] for g in views.explorer_groups(runs, version="1")] == ["a"]
    assert views.explorer_groups(runs, version="7") == []


def test_explorer_filters_name_the_stage_and_leave_the_version_to_the_grouping() -> None:
    filters = views.ExplorerFilters(stage="full-train", status="FAILED", version="3")
    assert filters.mlflow_filter() == "tags.stage = 'full-train' and attributes.status = 'FAILED'"
    assert filters.active
    assert views.ExplorerFilters().mlflow_filter() == ""
    with pytest.raises(InvalidInput, match="stage filter: no stage 'deploy'"):
        views.ExplorerFilters(stage="deploy")
