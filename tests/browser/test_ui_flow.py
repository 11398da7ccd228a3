"""The UI in headless Chromium against the real control plane, operator, node stand-in and
MLflow. The flow tests share one PipelineRun (created by a fake commit in the browser) and run
in file order; each saves screenshots (see conftest)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from claimops_stages.api_names import API_VERSION, PIPELINE_RUN
from claimops_stages.contract import SPEC_DEFAULTS, FailureMode
from claimops_ui.errors import Forbidden
from claimops_ui.kube import KubeGateway, load_configuration
from tests.browser.conftest import USERS, UiStack
from tests.harness.ui_pages import (
    expect_ci_starts_live,
    expect_failed_as_documented,
    expect_no_reload,
    fake_commit,
    fake_commit_with_failure,
    node,
)

pytestmark = [pytest.mark.browser, pytest.mark.cluster]

#: How long CI (ci-tests .. mlflow-log) and CD (full-train, evaluate) may take on 2 cores.
STAGE_TIMEOUT_MS = 300_000
FLOW: dict[str, Any] = {}


def shot(page: Page, stack: UiStack, name: str, width: int = 1366) -> None:
    if width != page.viewport_size["width"] if page.viewport_size else True:
        page.set_viewport_size({"width": width, "height": 900})
    page.screenshot(path=str(stack.screenshots / f"{name}.png"), full_page=True)


def session_client(stack: UiStack, user: str | None) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=stack.url, timeout=10)
    token = client.get("/auth/session").json()["csrfToken"]
    if user is not None:
        form = {"username": user, "password": USERS[user], "csrf_token": token}
        assert client.post("/ui/login", data=form).status_code == 303
        token = client.get("/auth/session").json()["csrfToken"]
    return client, token


# -- security ---------------------------------------------------------------------------------

CASES = [
    # (id, signed in, csrf header, origin, expected status)
    ("no-session", False, "valid", None, 401),
    ("no-csrf-token", True, None, None, 403),
    ("wrong-csrf-token", True, "wrong", None, 403),
    ("cross-site-origin", True, "valid", "https://evil.example", 403),
    ("same-site-with-token", True, "valid", "self", 200),
]


@pytest.mark.parametrize(
    ("signed_in", "csrf", "origin", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_mutations_need_a_session_a_csrf_token_and_the_same_origin(
    ui_stack: UiStack, signed_in: bool, csrf: str | None, origin: str | None, expected: int
) -> None:
    client, token = session_client(ui_stack, "bob" if signed_in else None)
    headers: dict[str, str] = {}
    if csrf is not None:
        headers["X-CSRF-Token"] = token if csrf == "valid" else "not-the-token"
    if origin is not None:
        headers["Origin"] = ui_stack.url if origin == "self" else origin
    before = len(ui_stack.kubectl_json("get", "cpr")["items"])
    # A cheap mutation that passes every check when allowed: stopping the (stopped) stream.
    stop = client.post("/claims/stream/stop", headers=headers)
    assert stop.status_code == expected, stop.text
    # A run-creating mutation behaves the same, and nothing is created when refused.
    if expected != 200:
        commit = client.post("/pipeline/commit", headers=headers, json={"rows": 5000, "nEstimators": 50})
        assert commit.status_code == expected, commit.text
        assert commit.json()["error"] in ("Unauthenticated", "Forbidden")
        assert len(ui_stack.kubectl_json("get", "cpr")["items"]) == before


def test_a_form_post_from_another_site_is_refused(ui_stack: UiStack) -> None:
    client, token = session_client(ui_stack, "bob")
    response = client.post(
        "/ui/actions/failures/TrainingError/toggle",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example", "Accept": "text/html"},
    )
    assert response.status_code == 403
    assert "cross-site" in response.text
    cm = ui_stack.control_plane.kubectl(
        "get", "configmap", "claimops-failure-defaults", "-n", ui_stack.namespace,
        "-o", "jsonpath={.data.TrainingError}",
    )  # fmt: skip
    assert cm.stdout == "false"


def test_the_ui_identity_can_only_read_and_impersonate_the_configured_users(ui_stack: UiStack) -> None:
    cp, ns = ui_stack.control_plane, ui_stack.namespace
    sa = f"system:serviceaccount:{ns}:claimops-ui"

    def can(*args: str) -> str:
        return cp.kubectl("auth", "can-i", *args, f"--as={sa}", "-n", ns, check=False).stdout.strip()

    assert can("list", PIPELINE_RUN.crd_name) == "yes"
    assert can("patch", PIPELINE_RUN.crd_name) == "no"
    assert can("create", PIPELINE_RUN.crd_name) == "no"
    assert can("impersonate", "users/alice") == "yes"
    assert can("impersonate", "users/mallory") == "no"
    assert can("impersonate", "groups/system:masters") == "no"


def test_the_api_server_refuses_an_approval_in_someone_elses_name(ui_stack: UiStack) -> None:
    cp, ns = ui_stack.control_plane, ui_stack.namespace
    run = {
        "apiVersion": API_VERSION,
        "kind": PIPELINE_RUN.kind,
        "metadata": {"name": "forgery-check"},
        # Cancelled from the start: the operator ends it without running anything.
        "spec": {"commit": {"sha": "abcdef1"}, "cancel": True, "dataset": {"rows": 5000}},
    }
    cp.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(run))
    # The UI's own write path: its ServiceAccount impersonating alice in the operators group,
    # a merge patch (no GET first), with nothing but the chart's RBAC.
    config = ui_stack.ui.config
    gateway = KubeGateway(
        load_configuration(config.kubeconfig),
        ns,
        impersonate_group=config.impersonate_group,
        failure_configmap=config.failure_defaults_configmap,
    )
    with pytest.raises(
        Forbidden,
        match=re.escape('spec.approval.by is "bob" but the API server authenticated you as "alice"'),
    ) as refused:
        gateway.patch_run(
            "alice", "forgery-check", {"spec": {"approval": {"decision": "Approved", "by": "bob"}}}
        )
    assert refused.value.status == 403
    # The honest ballot is recorded under alice and the ballot reset for the next approver.
    honest = gateway.patch_run(
        "alice", "forgery-check", {"spec": {"approval": {"decision": "Approved", "by": "alice"}}}
    )
    assert honest["spec"]["approval"]["decision"] == "Pending"
    assert "by" not in honest["spec"]["approval"]
    [recorded] = honest["spec"]["decisions"]
    assert (recorded["decision"], recorded["user"]) == ("Approved", "alice")
    assert config.impersonate_group in recorded["groups"]


# -- the flow -----------------------------------------------------------------------------------


def test_fake_commit_advances_the_dag_live_without_reload(alice: Page, ui_stack: UiStack) -> None:
    shot(alice, ui_stack, "01-runs-empty")
    name = fake_commit(alice)
    FLOW["run"] = name
    expect_ci_starts_live(alice, timeout_ms=30_000)
    shot(alice, ui_stack, "02-run-ci-running")
    expect(node(alice, "quick-train")).to_have_attribute("data-state", "Succeeded", timeout=STAGE_TIMEOUT_MS)
    expect(alice.locator("#run-phase")).to_have_text("AwaitingCD", timeout=STAGE_TIMEOUT_MS)
    expect_no_reload(alice)
    shot(alice, ui_stack, "03-run-awaiting-cd")
    alice.goto("/ui/runs")
    row = alice.locator(f"#run-{name}")
    expect(row).to_contain_text("AwaitingCD")
    shot(alice, ui_stack, "04-runs-list")
    shot(alice, ui_stack, "04-runs-list-wide", width=1920)
    alice.set_viewport_size({"width": 1366, "height": 900})


def test_continue_to_cd_then_approve_records_the_signed_in_user(
    alice: Page, bob: Page, ui_stack: UiStack
) -> None:
    name = FLOW["run"]
    alice.goto(f"/ui/runs/{name}")
    alice.get_by_role("button", name="Continue to CD").click()
    expect(node(alice, "full-train")).to_have_attribute(
        "data-state", re.compile("Running|Succeeded"), timeout=30_000
    )
    expect(alice.locator("#run-phase")).to_have_text("AwaitingApproval", timeout=STAGE_TIMEOUT_MS)
    # alice submitted the run: under four-eyes she is offered Reject only, and told why.
    expect(alice.locator("#approval-summary")).to_have_text(
        "Approvals: 0 of 1 — quorum 1, four-eyes on, approvers: groups claimops:operators"
    )
    expect(alice.locator("#submitter")).to_have_text("alice")
    expect(alice.locator("#approve")).to_have_count(0)
    expect(alice.locator("#reject")).to_be_visible()
    expect(alice.locator("#approval-reason")).to_contain_text("four-eyes")
    shot(alice, ui_stack, "05-run-awaiting-approval-submitter")
    # Asking anyway: the API server refuses, and its policy's words reach her (JSON and HTML).
    token = alice.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    refused = alice.request.post(f"/pipeline/{name}/approve", headers={"X-CSRF-Token": token})
    assert refused.status == 403, refused.text()
    assert refused.json()["error"] == "Forbidden"
    assert '"alice" submitted this run and may not approve it: four-eyes' in refused.json()["detail"]
    client, form_token = session_client(ui_stack, "alice")
    page = client.post(
        f"/ui/actions/runs/{name}/approve", data={"csrf_token": form_token}, headers={"Accept": "text/html"}
    )
    assert page.status_code == 403
    assert "may not approve it: four-eyes" in page.text.replace("&#34;", '"')
    # bob approves.
    bob.goto(f"/ui/runs/{name}")
    expect(bob.locator("#approval-reason")).to_have_count(0)
    shot(bob, ui_stack, "05-run-awaiting-approval")
    bob.get_by_label("Comment (required to reject)").fill("holdout AUC looks right")
    bob.get_by_role("button", name="Approve").click()
    expect(bob.locator("#approved-by")).to_have_text("bob", timeout=30_000)
    expect(bob.locator('#decisions .decision[data-decision="Approved"]')).to_contain_text("by bob")
    run = ui_stack.kubectl_json("get", "cpr", name, "--show-managed-fields")
    # Admission moved the ballot into spec.decisions under the authenticated users.
    assert run["spec"]["approval"]["decision"] == "Pending"
    assert "by" not in run["spec"]["approval"]
    assert [(d["decision"], d["user"], d.get("comment")) for d in run["spec"]["decisions"]] == [
        ("ContinueToCD", "alice", None),
        ("Approved", "bob", "holdout AUC looks right"),
    ]
    approval = run["status"]["approval"]
    assert (approval["decision"], approval["by"], approval["approvedBy"]) == ("Approved", "bob", ["bob"])
    assert [(d["decision"], d["user"]) for d in approval["decisions"]] == [
        ("ContinueToCD", "alice"),
        ("Approved", "bob"),
    ]
    managers = {m["manager"] for m in run["metadata"]["managedFields"]}
    assert "claimops-ui" in managers
    shot(bob, ui_stack, "06-run-approved")
    # A second run for the promotion/rollback test, started now so that its CI and CD overlap
    # with the tests in between (same data and seed: a candidate as good as the first).
    token = alice.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    second = alice.request.post(
        "/pipeline/commit",
        data={"rows": 5000, "nEstimators": 50, "autoContinueToCD": True, "failureInjection": []},
        headers={"X-CSRF-Token": token},
    )
    assert second.status == 201, second.text()
    FLOW["second"] = second.json()["name"]


INSPECTOR = [
    # (tab, what the panel must show for the finished quick-train stage)
    ("code", "#stage-code", "def quick_train(inputs: StageInputs, ctx: StageContext)"),
    ("config", "#stage-args", "--rows 5000"),
    ("logs", "#stage-log", "stage quick-train of pipeline run"),
    ("outputs", "#stage-metrics", "auc_roc"),
]


@pytest.mark.parametrize(("tab", "selector", "text"), INSPECTOR, ids=[c[0] for c in INSPECTOR])
def test_step_inspector_shows_a_finished_stage(
    alice: Page, ui_stack: UiStack, tab: str, selector: str, text: str
) -> None:
    name = FLOW["run"]
    alice.goto(f"/ui/runs/{name}")
    node(alice, "quick-train").click()
    alice.get_by_role("tab", name=tab.capitalize()).click()
    expect(alice.get_by_role("tab", name=tab.capitalize())).to_have_attribute("aria-selected", "true")
    expect(alice.locator(selector)).to_contain_text(text)
    if tab == "config":
        expect(alice.locator("#run-spec")).to_contain_text('"nEstimators": 50')
    if tab == "outputs":
        image = alice.locator("#shap-image")
        expect(image).to_be_visible()
        alice.wait_for_function(
            "() => { const i = document.querySelector('#shap-image'); return i.complete && i.naturalWidth > 100; }"
        )
        expect(alice.locator("#mlflow-run-link")).to_have_attribute(
            "href", re.compile(r"/#/experiments/\d+/runs/[0-9a-f]{32}$")
        )
    shot(alice, ui_stack, f"07-inspector-{tab}")


def test_ws_logs_streams_the_logs_of_the_runs_stages(ui_stack: UiStack) -> None:
    url = ui_stack.url.replace("http://", "ws://") + f"/ws/logs/{FLOW['run']}"
    seen: dict[str, str] = {}
    with connect(url, open_timeout=10) as socket:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "quick-train" not in seen:
            message = json.loads(socket.recv(timeout=10))
            if "stage" in message:
                seen[message["stage"]] = message["text"]
    assert "stage quick-train of pipeline run" in seen.get("quick-train", ""), sorted(seen)


def test_failure_toggle_makes_the_next_run_fail_with_the_documented_reason(
    alice: Page, ui_stack: UiStack
) -> None:
    mode = FailureMode.SCHEMA_VALIDATION
    name = fake_commit_with_failure(alice, mode)
    assert ui_stack.kubectl_json("get", "cpr", name)["spec"]["failureInjection"] == [mode.value]
    expect_failed_as_documented(alice, name, mode, "data-validation", STAGE_TIMEOUT_MS)
    shot(alice, ui_stack, "08-run-failed-schema-validation")


PROFILES = [("severe", "true"), ("none", "false")]


@pytest.mark.parametrize(("profile", "drifted"), PROFILES, ids=[p[0] for p in PROFILES])
def test_claims_stream_shows_drift_only_when_the_profile_drifts(
    alice: Page, ui_stack: UiStack, profile: str, drifted: str
) -> None:
    alice.goto("/ui/claims")
    alice.get_by_label("Drift profile").select_option(profile)
    alice.locator("#stream-start").click()
    verdict = alice.locator("#drift-verdict")
    expect(verdict).to_have_attribute("data-profile", profile, timeout=20_000)
    expect(verdict).to_have_attribute("data-drifted", re.compile("true|false"), timeout=30_000)
    assert verdict.get_attribute("data-drifted") == drifted, verdict.text_content()
    expect(alice.locator("#claims-body tr")).to_have_count(25)
    billed = float(alice.locator('#psi-table td[data-feature="billed_amount"]').text_content() or "nan")
    assert (billed > 0.2) == (drifted == "true")
    shot(alice, ui_stack, f"09-claims-{profile}")
    alice.locator("#stream-stop").click()
    expect(alice.locator("#stream-state")).to_contain_text("Stopped")


def test_mlflow_explorer_and_deployments_pages(alice: Page, ui_stack: UiStack) -> None:
    alice.goto("/ui/mlflow")
    group = alice.locator(f'details.run-group[data-pipeline-run="{FLOW["run"]}"]')
    group.evaluate("details => { details.open = true; }")
    expect(group.locator("tbody tr").first).to_be_visible()
    expect(alice.get_by_role("link", name="Open the MLflow UI ↗")).to_have_attribute(
        "href", ui_stack.mlflow.url
    )
    shot(alice, ui_stack, "10-mlflow-explorer")
    group.locator("tbody tr a").first.click()
    expect(alice.get_by_role("heading", level=1)).to_be_visible()
    shot(alice, ui_stack, "11-mlflow-run")
    alice.goto("/ui/deployments")
    staging = alice.locator("#dep-staging")
    expect(staging).to_contain_text("claim-settlement-staging")
    # The protocols the model server speaks, with the paths the operator put in its status.
    protocols = ui_stack.kubectl_json("get", "mdep", "claim-settlement-staging")["status"]["protocols"]
    for protocol in protocols:
        expect(staging.locator(f'li[data-protocol="{protocol["name"]}"]')).to_contain_text(protocol["path"])
    assert [p["name"] for p in protocols] == ["predict", "v2", "mlflow"]
    shot(alice, ui_stack, "12-deployments")


def _wait_promoted(stack: UiStack, name: str, timeout: float) -> dict[str, Any]:
    """The run once promote-production succeeded (fails after `timeout` or when the run ends)."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = stack.kubectl_json("get", "cpr", name)
        stages = {s["name"]: s.get("state") for s in run["status"].get("stages", [])}
        if stages.get("promote-production") == "Succeeded":
            return run
        if run["status"].get("phase") in ("Failed", "Rejected", "Cancelled"):
            break
        time.sleep(2)
    pytest.fail(f"{name} was not promoted: {json.dumps(run.get('status', {}).get('stages'))[:2000]}")


def champion_version(page: Page) -> str | None:
    page.goto("/ui/mlflow")
    found = page.locator("#champion-version")
    return found.text_content() if found.count() else None


def wait_champion(page: Page, version: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while champion_version(page) != version:
        if time.monotonic() > deadline:
            pytest.fail(f"the champion card shows v{champion_version(page)}, not v{version}")
        time.sleep(2)


def mlflow_training_run(stack: UiStack, version: str) -> dict[str, Any]:
    """The training run of a registered version, from MLflow's REST API (not the UI)."""
    name = SPEC_DEFAULTS["model.name"]
    with httpx.Client(base_url=stack.mlflow.url, timeout=10) as mlflow:
        found = mlflow.get("/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version})
        run_id = found.raise_for_status().json()["model_version"]["run_id"]
        run = mlflow.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}).raise_for_status().json()
    return run["run"]


def expect_compare_page(page: Page, stack: UiStack, name: str) -> None:
    """The compare page shows the run's candidate beside the champion its evaluation compared
    against, with the numbers MLflow and the run's status hold, and the approval buttons."""
    run = stack.kubectl_json("get", "cpr", name)
    candidate, evaluation = run["status"]["mlflow"]["modelVersion"], run["status"]["evaluation"]
    # The second run may be evaluated before the first is promoted: then there is no champion.
    champion = evaluation.get("championVersion") or None
    page.locator("#compare-link").click()
    expect(page).to_have_url(re.compile(f"/ui/runs/{name}/compare$"))
    expect(page.locator("#candidate-version")).to_have_text(candidate)
    expect(page.locator("#champion-version")).to_have_text(champion or "none")
    sides = [(candidate, "candidate")] + ([(champion, "champion")] if champion else [])
    for version, column in sides:
        metrics = {m["key"]: m["value"] for m in mlflow_training_run(stack, version)["data"]["metrics"]}
        cell = page.locator(f'#compare-metrics tr[data-name="auc_roc"] td.{column}')
        assert float(cell.text_content() or "nan") == pytest.approx(metrics["auc_roc"], abs=5e-5)
        importance = [k for k in metrics if k.startswith("importance_")]
        bars = page.locator(f'#compare-importance rect.side[data-side="v{version} ({column})"]')
        assert bars.count() == len(importance) > 0
    gates = run["spec"]["gates"]
    if champion:
        estimate = page.locator("#compare-delta circle.estimate")
        assert float(estimate.get_attribute("data-value") or "nan") == pytest.approx(evaluation["delta"])
        threshold = page.locator("#compare-delta g.threshold")
        assert float(threshold.get_attribute("data-value") or "nan") == pytest.approx(-gates["maxAucDrop"])
    else:
        expect(page.locator("#compare-delta")).to_have_count(0)
    expect(page.locator('#gate-table tr[data-gate="minAuc"]')).to_contain_text(f"{gates['minAuc']:.4f}")
    expect(page.locator("#gate-verdict")).to_have_text("passed" if evaluation["passed"] else "failed")
    plots = page.locator("img.plot")
    expect(plots).to_have_count(2 * len(sides))
    for i in range(2 * len(sides)):
        expect(plots.nth(i)).to_have_js_property("complete", True)
        assert plots.nth(i).evaluate("img => img.naturalWidth") > 0
    expect(page.get_by_role("button", name="Approve")).to_be_visible()
    shot(page, stack, "13a-compare-before-approving")
    shot(page, stack, "13b-compare-before-approving-wide", width=1920)
    page.set_viewport_size({"width": 1366, "height": 900})


def test_champion_card_changes_after_each_promotion(alice: Page, bob: Page, ui_stack: UiStack) -> None:
    first = _wait_promoted(ui_stack, FLOW["run"], timeout=300)["status"]["mlflow"]["modelVersion"]
    wait_champion(alice, first)
    shot(alice, ui_stack, "13-champion-first")
    # alice submitted the second run too: bob approves it (four-eyes).
    bob.goto(f"/ui/runs/{FLOW['second']}")
    expect(bob.locator("#run-phase")).to_have_text("AwaitingApproval", timeout=STAGE_TIMEOUT_MS)
    # bob reads the comparison first (one click from the gate) and approves from there.
    expect_compare_page(bob, ui_stack, FLOW["second"])
    bob.get_by_role("button", name="Approve").click()
    expect(bob.locator("#approved-by")).to_have_text("bob", timeout=30_000)
    second = _wait_promoted(ui_stack, FLOW["second"], timeout=300)["status"]["mlflow"]["modelVersion"]
    assert second != first
    wait_champion(alice, second)
    shot(alice, ui_stack, "14-champion-second")
    # The champion card links to the version's release record; what it serves is that record.
    link = alice.locator("#champion-card a.release-record")
    expect(link).to_have_count(1)
    record = alice.request.get(str(link.get_attribute("href")))
    assert record.ok, record.text()
    statement = record.json()
    assert statement["subject"][0]["name"] == f"models:/{SPEC_DEFAULTS['model.name']}/{second}"
    assert [a["user"] for a in statement["predicate"]["approvals"]] == ["bob"]
    assert statement["predicate"]["submitter"]["username"] == "alice"
    title = str(link.get_attribute("title"))
    assert title == "sha256:" + hashlib.sha256(record.body()).hexdigest()
    alice.goto("/ui/deployments")
    expect(alice.locator("#dep-production .version")).to_have_text(second, timeout=60_000)
    FLOW["versions"] = (first, second)


def test_claims_are_scored_by_the_production_model_server(alice: Page, ui_stack: UiStack) -> None:
    alice.goto("/ui/claims")
    alice.get_by_label("Drift profile").select_option("none")
    alice.locator("#stream-start").click()
    try:
        expect(alice.locator("#scoring-note")).to_have_text(
            "scored by the production model server", timeout=20_000
        )
        decision = alice.locator("#claims-body tr").first.locator("td").nth(7)
        expect(decision).to_have_text(re.compile("Approved|Denied"))
        shot(alice, ui_stack, "16-claims-scored")
    except BaseException:
        with ui_stack.node._lock:
            runs = [
                (
                    r.name,
                    r.ready,
                    r.port,
                    r.deleted,
                    r.process.poll() if r.process else "-",
                    sorted(r.labels.items()),
                )
                for r in ui_stack.node.runs.values()
                if r.namespace == ui_stack.namespace and r.port is not None
            ]
        url = f"http://claim-settlement-production.{ui_stack.namespace}.svc:8080"
        print("servers:", runs, "\nresolved:", ui_stack.node.resolve_services(url))
        print(
            ui_stack.control_plane.kubectl(
                "get", "svc,pods", "-n", ui_stack.namespace, "--show-labels"
            ).stdout
        )
        raise
    finally:
        alice.locator("#stream-stop").click()


def test_rollback_in_the_ui_restores_the_previous_champion(alice: Page, ui_stack: UiStack) -> None:
    first = FLOW["versions"][0]
    alice.goto("/ui/deployments")
    alice.get_by_label("Rollback reason").fill("browser test: back to the first model")
    alice.get_by_role("button", name="Rollback to the previous version").click()
    production = ui_stack.kubectl_json("get", "mdep", "claim-settlement-production")
    assert production["spec"]["rollback"]["reason"] == "browser test: back to the first model"
    wait_champion(alice, first, timeout=90)
    alice.goto("/ui/deployments")
    expect(alice.locator("#dep-production .version")).to_have_text(first, timeout=60_000)
    expect(alice.locator("#dep-production .rollback-state")).to_contain_text(f"to version {first}")
    shot(alice, ui_stack, "15-rolled-back")


def test_no_console_errors_on_any_page(alice: Page, ui_stack: UiStack) -> None:
    for path in (
        "/ui/runs",
        f"/ui/runs/{FLOW.get('run', 'none')}",
        f"/ui/runs/{FLOW.get('run', 'none')}/compare",
        "/ui/mlflow",
        "/ui/deployments",
        "/ui/claims",
        "/ui/login",
    ):
        alice.goto(path)
        alice.wait_for_load_state("networkidle") if path != "/ui/claims" else alice.wait_for_timeout(1500)
    assert ui_stack.console_errors == []
