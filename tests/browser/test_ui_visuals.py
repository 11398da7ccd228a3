"""The UI's charts in headless Chromium, each checked against the records it pictures: the
model trend against MLflow's registry (REST, not the UI), the run timeline and the runs list's
durations against the PipelineRun's status, the drift history against the stream's threshold
and profile changes. Runs after test_ui_flow (file order), whose runs and promotions it reads.
Every chart is screenshotted at laptop and wide widths; no page may load anything from a host
other than the UI's own.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Request, expect

from claimops_stages.contract import SPEC_DEFAULTS, STAGES
from claimops_ui.claims_stream import PSI_THRESHOLD
from claimops_ui.views import EXPLORER_RUNS
from tests.browser.conftest import UiStack

pytestmark = [pytest.mark.browser, pytest.mark.cluster]

MODEL = SPEC_DEFAULTS["model.name"]
WIDTHS = {"laptop": 1366, "wide": 1920}


def chart_shots(page: Page, stack: UiStack, *chart_ids: str) -> None:
    """A screenshot of each chart element at each width."""
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        for chart_id in chart_ids:
            page.locator(f"#{chart_id}").screenshot(
                path=str(stack.screenshots / f"chart-{chart_id}-{label}.png")
            )
    page.set_viewport_size({"width": 1366, "height": 900})


def registry(stack: UiStack) -> tuple[list[dict[str, Any]], str | None]:
    """(every registered version, the champion alias's version), from MLflow's REST API."""
    with httpx.Client(base_url=stack.mlflow.url, timeout=10) as mlflow:
        found = mlflow.get(
            "/api/2.0/mlflow/model-versions/search", params={"filter": f"name='{MODEL}'", "max_results": 200}
        )
        versions = found.raise_for_status().json().get("model_versions", [])
        alias = mlflow.get(
            "/api/2.0/mlflow/registered-models/alias", params={"name": MODEL, "alias": "champion"}
        )
        champion = str(alias.json()["model_version"]["version"]) if alias.status_code == 200 else None
    return versions, champion


def points(page: Page, chart: str, series: str) -> dict[str, tuple[float, str]]:
    """x -> (value, marks) of one series' drawn points."""
    drawn = page.locator(f'#{chart} g.series[data-series="{series}"] circle.point')
    return {
        str(c.get_attribute("data-x")): (
            float(c.get_attribute("data-value") or "nan"),
            str(c.get_attribute("data-marks") or ""),
        )
        for c in drawn.all()
    }


def test_model_trend_draws_every_registered_version_and_marks_the_champion(
    alice: Page, ui_stack: UiStack
) -> None:
    versions, champion = registry(ui_stack)
    assert len(versions) >= 2, "test_ui_flow registers two versions"
    assert champion is not None, "test_ui_flow promotes a champion"
    alice.goto("/ui/mlflow")
    auc = points(alice, "model-trend", "auc_roc")
    assert sorted(auc) == sorted(f"v{v['version']}" for v in versions)
    champions = [x for x, (_, marks) in auc.items() if "champion" in marks.split()]
    assert champions == [f"v{champion}"]
    deltas: dict[str, float] = {}
    with httpx.Client(base_url=ui_stack.mlflow.url, timeout=10) as mlflow:
        for v in versions:
            run = mlflow.get("/api/2.0/mlflow/runs/get", params={"run_id": v["run_id"]}).json()["run"]
            metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
            assert auc[f"v{v['version']}"][0] == pytest.approx(metrics["auc_roc"]), v["version"]
            tags = {t["key"]: t["value"] for t in v.get("tags", [])}
            if tags.get("evaluation_run_id"):
                evaluation = mlflow.get(
                    "/api/2.0/mlflow/runs/get", params={"run_id": tags["evaluation_run_id"]}
                )
                found = {m["key"]: m["value"] for m in evaluation.json()["run"]["data"]["metrics"]}
                if "auc_delta" in found:
                    deltas[f"v{v['version']}"] = found["auc_delta"]
    # test_ui_flow rolled production back: the version rolled back from is marked, and only it.
    tagged = {
        f"v{v['version']}" for v in versions if any(t["key"] == "rolled_back_at" for t in v.get("tags", []))
    }
    assert tagged, "the flow's rollback tags the version it rolled back from"
    assert {x for x, (_, marks) in auc.items() if "rolled-back" in marks.split()} == tagged
    # A version evaluated against a champion has its delta drawn, with its interval.
    drawn = points(alice, "auc-delta", "auc_delta")
    assert {x: v for x, (v, _) in drawn.items()} == pytest.approx(deltas)
    if deltas:
        expect(alice.locator("#auc-delta line.whisker")).to_have_count(len(deltas))
        expect(alice.locator("#auc-delta g.threshold")).to_have_attribute(
            "data-value", str(-SPEC_DEFAULTS["gates.maxAucDrop"])
        )
    chart_shots(alice, ui_stack, "model-trend", "auc-delta")


def test_explorer_groups_the_stage_runs_of_each_pipeline_run_and_filters_them(
    alice: Page, ui_stack: UiStack
) -> None:
    # The explorer reads the newest EXPLORER_RUNS stage runs of every experiment (the session's
    # MLflow holds the other layers' experiments too): read the same from MLflow's REST API.
    with httpx.Client(base_url=ui_stack.mlflow.url, timeout=10) as mlflow:
        experiments = mlflow.post("/api/2.0/mlflow/experiments/search", json={"max_results": 100}).json()
        found = mlflow.post(
            "/api/2.0/mlflow/runs/search",
            json={
                "experiment_ids": [e["experiment_id"] for e in experiments["experiments"]],
                "max_results": EXPLORER_RUNS,
                "order_by": ["attributes.start_time DESC"],
            },
        ).json()["runs"]
    by_run: dict[str, int] = {}
    for run in found:
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        by_run[tags.get("pipeline_run", "")] = by_run.get(tags.get("pipeline_run", ""), 0) + 1
    alice.goto("/ui/mlflow")
    groups = alice.locator("details.run-group")
    drawn = {
        str(g.get_attribute("data-pipeline-run")): g.locator("tr.stage-run").count() for g in groups.all()
    }
    assert drawn == by_run
    alice.locator("#filter-stage").select_option("full-train")
    alice.get_by_role("button", name="Filter").click()
    expect(alice).to_have_url(re.compile(r"stage=full-train"))
    rows = alice.locator("tr.stage-run")
    assert rows.count() >= 2
    assert {r.get_attribute("data-stage") for r in rows.all()} == {"full-train"}
    versions, _ = registry(ui_stack)
    newest = max(versions, key=lambda v: int(v["version"]))["version"]
    alice.goto(f"/ui/mlflow?version={newest}")
    rows = alice.locator("tr.stage-run")
    assert rows.count() >= 1
    expect(alice.locator("#groups-count")).to_contain_text("matching the filters")
    alice.goto("/ui/mlflow?stage=no-such-stage")
    expect(alice.locator("body")).to_contain_text("stage filter")


def _seconds(start: str, end: str) -> float:
    return (
        datetime.fromisoformat(end.replace("Z", "+00:00"))
        - datetime.fromisoformat(start.replace("Z", "+00:00"))
    ).total_seconds()


def test_run_timeline_has_a_bar_for_each_started_stage_and_the_runs_list_shows_durations(
    alice: Page, ui_stack: UiStack
) -> None:
    runs = ui_stack.kubectl_json("get", "cpr")["items"]
    done = [r for r in runs if r["status"].get("phase") == "Succeeded"]
    assert done, "test_ui_flow's runs have finished"
    run = done[0]
    name, status = run["metadata"]["name"], run["status"]
    started = {s["name"]: s for s in status["stages"] if s.get("startedAt")}
    alice.goto(f"/ui/runs/{name}")
    bars = alice.locator("#run-timeline g.bar")
    assert [b.get_attribute("data-stage") for b in bars.all()] == [
        s.name for s in STAGES if s.name in started
    ]
    previous_end = 0.0
    for bar in bars.all():
        entry = started[str(bar.get_attribute("data-stage"))]
        measured = float(bar.get_attribute("data-duration") or "nan")
        assert measured == pytest.approx(_seconds(entry["startedAt"], entry["finishedAt"]), abs=1.0)
        start = _seconds(status["startedAt"], entry["startedAt"])
        assert float(bar.get_attribute("data-start") or "nan") == pytest.approx(start, abs=1.0)
        # A stage waits from the end of the stages before it (or the run's start) to its own start.
        assert float(bar.get_attribute("data-wait") or "nan") == pytest.approx(
            max(start - previous_end, 0.0), abs=1.0
        )
        previous_end = max(previous_end, _seconds(status["startedAt"], entry["finishedAt"]))
    chart_shots(alice, ui_stack, "run-timeline")
    alice.goto("/ui/runs")
    cell = alice.locator(f"#run-{name} td.duration")
    assert float(cell.get_attribute("data-seconds") or "nan") == pytest.approx(
        _seconds(status["startedAt"], status["finishedAt"]), abs=1.0
    )
    expect(cell).to_have_text(re.compile(r"\d+ (s|min)"))


def _history_points(page: Page) -> dict[str, tuple[float, str]]:
    page.goto("/ui/claims")
    return points(page, "drift-psi", "billed_amount")


def test_drift_over_time_crosses_the_threshold_under_a_severe_profile_and_marks_the_change(
    alice: Page, ui_stack: UiStack
) -> None:
    alice.goto("/ui/claims")
    alice.get_by_label("Drift profile", exact=True).select_option("severe")
    alice.locator("#stream-start").click()
    try:
        verdict = alice.locator("#drift-verdict")
        expect(verdict).to_have_attribute("data-drifted", "true", timeout=30_000)
        deadline = time.monotonic() + 30
        while len(_history_points(alice)) < 3 and time.monotonic() < deadline:
            time.sleep(1)
        alice.get_by_label("Drift profile", exact=True).select_option("none")
        alice.locator("#stream-start").click()
        expect(alice.locator("#drift-verdict")).to_have_attribute("data-profile", "none", timeout=20_000)
        expect(alice.locator("#drift-verdict")).to_have_attribute("data-drifted", "false", timeout=30_000)
        deadline = time.monotonic() + 30
        while alice.locator("#drift-psi g.event").count() == 0 and time.monotonic() < deadline:
            time.sleep(1)
            _history_points(alice)
        drawn = _history_points(alice)
    finally:
        alice.locator("#stream-stop").click()
    threshold = float(alice.locator("#drift-psi g.threshold").get_attribute("data-value") or "nan")
    assert threshold == PSI_THRESHOLD
    values = list(drawn.values())
    assert max(v for v, _ in values) > threshold, (
        "the severe profile's billed_amount line crosses the threshold"
    )
    assert values[-1][0] < threshold, "after the change to none it falls back under it"
    events = alice.locator("#drift-psi g.event")
    expect(events).to_have_count(1)
    assert events.get_attribute("data-label") == "profile none"
    # The change is marked where the first window of the new profile is.
    changed_at = str(events.get_attribute("data-x"))
    order = list(drawn)
    assert drawn[order[order.index(changed_at) - 1]][0] > threshold
    # Every window from the change on holds claims of the new profile only.
    assert all(drawn[x][0] < threshold for x in order[order.index(changed_at) :])
    js = alice.locator("#drift-js g.series")
    assert js.count() >= 1
    chart_shots(alice, ui_stack, "drift-psi", "drift-js")


def test_pages_load_nothing_from_any_other_host(alice: Page, ui_stack: UiStack) -> None:
    runs = ui_stack.kubectl_json("get", "cpr")["items"]
    name = runs[0]["metadata"]["name"]
    own = urlsplit(ui_stack.url).netloc
    foreign: list[str] = []

    def record(request: Request) -> None:
        if (
            urlsplit(request.url).scheme in ("http", "https", "ws", "wss")
            and urlsplit(request.url).netloc != own
        ):
            foreign.append(request.url)

    alice.on("request", record)
    try:
        for path in (
            "/ui/runs",
            f"/ui/runs/{name}",
            f"/ui/runs/{name}/compare",
            "/ui/mlflow",
            "/ui/claims",
            "/ui/deployments",
        ):
            alice.goto(path)
            alice.wait_for_timeout(1000)
    finally:
        alice.remove_listener("request", record)
    assert foreign == []
