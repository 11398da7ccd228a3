"""The browser layer's stack, started once per session: the real control plane, the node
stand-in, a real `mlflow server`, the real operator process for a namespace of its own, and
the UI (uvicorn in a thread) acting with a least-privilege ServiceAccount token. Playwright
drives Debian's headless Chromium against it.

Screenshots go to $CLAIMOPS_ARTIFACTS/ui-screenshots (default: the session's tmp dir); the
path is printed at the end of the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.harness import approvals
from tests.harness.control_plane import ControlPlane
from tests.harness.mlflow_server import MlflowServer
from tests.harness.node_standin import NodeStandIn
from tests.harness.operator_process import OperatorProcess
from tests.harness.ui_server import StandInLogSource, UiServer, setup_ui_identity, ui_config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USERS = {"alice": "wonderland-7f3c", "bob": "builder-91ad"}


@dataclass
class UiStack:
    control_plane: ControlPlane
    namespace: str
    mlflow: MlflowServer
    operator: OperatorProcess
    ui: UiServer
    node: NodeStandIn
    screenshots: Path
    console_errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.ui.url

    def kubectl_json(self, *args: str) -> Any:
        import json

        return json.loads(self.control_plane.kubectl(*args, "-n", self.namespace, "-o", "json").stdout)


@pytest.fixture(scope="package")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = os.environ.get("CLAIMOPS_ARTIFACTS")
    path = Path(base) / "ui-screenshots" if base else tmp_path_factory.mktemp("ui-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    yield path
    print(f"\nUI screenshots: {path}")


@pytest.fixture(scope="package")
def ui_stack(
    control_plane: ControlPlane,
    claimops_crds: tuple[str, ...],
    cluster_mlflow: MlflowServer,
    node_standin: NodeStandIn,
    tmp_path_factory: pytest.TempPathFactory,
    screenshot_dir: Path,
) -> Iterator[UiStack]:
    workdir = tmp_path_factory.mktemp("ui")
    namespace = f"ui-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    # Decisions are recorded (and refused) by the chart's approvals policies, as installed.
    policies = approvals.install(control_plane, namespace)
    operator = OperatorProcess(control_plane.kubeconfig, namespace, cluster_mlflow.url, workdir / "operator")
    operator.workdir.mkdir(parents=True)
    operator.start()
    kubeconfig = setup_ui_identity(control_plane, namespace, list(USERS), workdir)
    config = ui_config(namespace, kubeconfig, cluster_mlflow.url, workdir, USERS)
    ui = UiServer(config, StandInLogSource(node_standin), node_standin.resolve_services).start()
    try:
        yield UiStack(control_plane, namespace, cluster_mlflow, operator, ui, node_standin, screenshot_dir)
    finally:
        ui.stop()
        operator.stop()
        approvals.uninstall(control_plane, policies)
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def watch_console(page: Page, errors: list[str]) -> None:
    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))


def signed_in(browser: Browser, stack: UiStack, user: str) -> Iterator[Page]:
    context = browser.new_context(base_url=stack.url, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    watch_console(page, stack.console_errors)
    page.goto("/ui/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(USERS[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/runs")
    yield page
    context.close()


@pytest.fixture(scope="package")
def alice(browser: Browser, ui_stack: UiStack) -> Iterator[Page]:
    """One signed-in page for the whole session (the flow tests share one run, which alice
    submits)."""
    yield from signed_in(browser, ui_stack, "alice")


@pytest.fixture(scope="package")
def bob(browser: Browser, ui_stack: UiStack) -> Iterator[Page]:
    """A second login: under four-eyes the submitter's runs are approved by someone else."""
    yield from signed_in(browser, ui_stack, "bob")
