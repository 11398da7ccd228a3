"""The UI through kind's port mapping (http://localhost:3001) in headless Chromium, signed in
with the password from the Secret the chart generated, acting under the chart's own RBAC:
a fake commit advances live, the inspector shows the real pod log (pods/log API), approval
records the signed-in user (who may not be the run's submitter: four-eyes), and a failure
toggle makes the next run fail as documented."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from claimops_stages.contract import FailureMode
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.conftest import UI_URL, KindCluster, pipelinerun
from tests.harness.ui_pages import (
    expect_ci_starts_live,
    expect_failed_as_documented,
    expect_no_reload,
    fake_commit,
    fake_commit_with_failure,
    node,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]
#: CI or CD of a small run on kind (2 cores, a container start per stage).
STAGE_TIMEOUT_MS = 420_000
FLOW: dict[str, Any] = {}


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("CLAIMOPS_ARTIFACTS")
    path = Path(base) / "e2e-screenshots" if base else tmp_path_factory.mktemp("e2e-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def admin(kind: KindCluster) -> Iterator[Page]:
    password = kind.secret(f"{kind.release}-ui-admin", "password")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(base_url=UI_URL, viewport={"width": 1366, "height": 900}).new_page()
        page.set_default_timeout(20_000)
        page.goto("/ui/login")
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/ui/runs")
        yield page
        browser.close()


def test_fake_commit_appears_and_advances_live(admin: Page, kind: KindCluster, screenshots: Path) -> None:
    name = fake_commit(admin)
    FLOW["run"] = name
    expect_ci_starts_live(admin, timeout_ms=60_000)
    expect(admin.locator("#run-phase")).to_have_text("AwaitingCD", timeout=STAGE_TIMEOUT_MS)
    expect_no_reload(admin)
    admin.screenshot(path=str(screenshots / "01-run-awaiting-cd.png"), full_page=True)
    assert kind.get("cpr", name)["status"]["phase"] == "AwaitingCD"


def test_the_inspector_shows_the_real_pod_log(admin: Page, kind: KindCluster, screenshots: Path) -> None:
    name = FLOW["run"]
    job = next(s["job"] for s in kind.get("cpr", name)["status"]["stages"] if s["name"] == "quick-train")
    pod_log = kind.kubectl("logs", f"job/{job}").stdout
    line = next(ln for ln in pod_log.splitlines() if "stage quick-train of pipeline run" in ln)
    admin.goto(f"/ui/runs/{name}")
    node(admin, "quick-train").click()
    admin.get_by_role("tab", name="Logs").click()
    expect(admin.locator("#stage-log")).to_contain_text(line.strip()[-60:])
    admin.screenshot(path=str(screenshots / "02-inspector-logs.png"), full_page=True)


def test_continue_and_approve_record_the_signed_in_user(
    admin: Page, kind: KindCluster, screenshots: Path
) -> None:
    name = FLOW["run"]
    # admin submitted that run through the UI, so four-eyes keeps admin from approving it. The
    # run admin approves is created with kubectl (submitter: kind's kubeconfig user), now, so
    # that its CI and CD overlap the first run's CD.
    other = f"e2e-ui-approve-{int(time.time()) % 100000:05d}"
    kind.kubectl(
        "apply", "-f", "-",
        stdin=pipelinerun(
            other, "ab12cd3" + "0" * 33,
            dataset={"rows": 5000}, training={"nEstimators": 50}, autoContinueToCD=True,
        ),
    )  # fmt: skip
    admin.goto(f"/ui/runs/{name}")
    admin.get_by_role("button", name="Continue to CD").click()
    expect(admin.locator("#run-phase")).to_have_text("AwaitingApproval", timeout=STAGE_TIMEOUT_MS)
    expect(admin.locator("#approve")).to_have_count(0)
    expect(admin.locator("#approval-reason")).to_contain_text("four-eyes")
    # The journey tests own production: this run stops here.
    admin.locator("#cancel").click()
    expect(admin.locator("#run-phase")).to_have_text("Cancelled", timeout=60_000)
    admin.goto(f"/ui/runs/{other}")
    expect(admin.locator("#run-phase")).to_have_text("AwaitingApproval", timeout=2 * STAGE_TIMEOUT_MS)
    admin.get_by_label("Comment (required to reject)").fill("e2e: approved in the browser")
    admin.get_by_role("button", name="Approve").click()
    expect(admin.locator("#approved-by")).to_have_text("admin", timeout=30_000)
    run = kind.get("cpr", other)
    assert run["spec"]["submitter"]["username"] != "admin"
    # Admission recorded the ballot under the signed-in user and reset spec.approval.
    assert run["spec"]["approval"]["decision"] == "Pending"
    assert "by" not in run["spec"]["approval"]
    assert run["spec"]["decisions"][-1]["user"] == "admin"
    assert run["status"]["approval"] == {**run["status"]["approval"], "decision": "Approved", "by": "admin"}
    admin.screenshot(path=str(screenshots / "03-approved.png"), full_page=True)
    admin.locator("#cancel").click()
    expect(admin.locator("#run-phase")).to_have_text("Cancelled", timeout=60_000)


def test_a_failure_toggle_makes_the_next_run_fail_as_documented(
    admin: Page, kind: KindCluster, screenshots: Path
) -> None:
    mode = FailureMode.SCHEMA_VALIDATION
    name = fake_commit_with_failure(admin, mode)
    assert kind.get("cpr", name)["spec"]["failureInjection"] == [mode.value]
    expect_failed_as_documented(admin, name, mode, "data-validation", STAGE_TIMEOUT_MS)
    admin.screenshot(path=str(screenshots / "04-schema-validation-failed.png"), full_page=True)
    message = kind.condition("cpr", name, "Succeeded")["message"]
    assert "column" in message.lower(), message
