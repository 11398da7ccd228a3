"""What a user does on the UI's pages, for the browser layer (UI against the test control
plane) and the e2e layer (UI installed on kind): one place that knows the page's labels and
element ids, so a change in the templates breaks one helper, not two copies of it."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from claimops_stages.contract import FAILURE_REASONS, FailureMode


def node(page: Page, stage: str) -> Any:
    """The DAG node of `stage` on a run's page (its `data-state` mirrors the stage's state)."""
    return page.locator(f'.node[data-stage="{stage}"]')


def fake_commit(page: Page, rows: int = 5000, trees: int = 50) -> str:
    """Start a run with the runs page's "Fake commit" form; the PipelineRun's name."""
    page.goto("/ui/runs")
    page.get_by_label("Rows").fill(str(rows))
    page.get_by_label("Trees").fill(str(trees))
    page.get_by_role("button", name="Fake commit").click()
    page.wait_for_url(re.compile(r".*/ui/runs/run-[0-9a-f]{7}-.*"))
    return page.url.split("/ui/runs/")[1].split("?")[0]


def expect_ci_starts_live(page: Page, timeout_ms: int) -> None:
    """On a new run's page: mark the page (for :func:`expect_no_reload`), then the DAG shows
    `commit` Succeeded and `ci-tests` started (Running, or already Succeeded) within
    `timeout_ms` each."""
    page.evaluate("window.__noReload = 'still here'")
    expect(node(page, "commit")).to_have_attribute("data-state", "Succeeded", timeout=timeout_ms)
    expect(node(page, "ci-tests")).to_have_attribute(
        "data-state", re.compile("Running|Succeeded"), timeout=timeout_ms
    )


def expect_no_reload(page: Page) -> None:
    """The page marked by :func:`expect_ci_starts_live` has not been reloaded since."""
    assert page.evaluate("window.__noReload") == "still here", "the page reloaded"


def fake_commit_with_failure(page: Page, mode: FailureMode) -> str:
    """Switch the failure toggle `mode` on, start a run, switch it off again (also when the
    commit fails, so later tests see the default); the run's name."""
    page.goto("/ui/runs")
    expect(page.locator(f"#toggle-{mode.value}")).to_have_attribute("aria-checked", "false")
    page.locator(f"#toggle-{mode.value}").click()
    expect(page.locator(f"#toggle-{mode.value}")).to_have_attribute("aria-checked", "true")
    try:
        return fake_commit(page)
    finally:
        page.goto("/ui/runs")
        page.locator(f"#toggle-{mode.value}").click()
        expect(page.locator(f"#toggle-{mode.value}")).to_have_attribute("aria-checked", "false")


def expect_failed_as_documented(page: Page, run: str, mode: FailureMode, stage: str, timeout_ms: int) -> None:
    """The run's page shows it Failed at `stage` with the reason documented for `mode`."""
    page.goto(f"/ui/runs/{run}")
    expect(page.locator("#run-phase")).to_have_text("Failed", timeout=timeout_ms)
    expect(node(page, stage)).to_have_attribute("data-state", "Failed")
    expect(page.locator("#run-reason")).to_contain_text(FAILURE_REASONS[mode].value)
