"""What `make up` installed, checked on the running kind cluster: pods Ready in a namespace
that enforces Pod Security `restricted` and running as the users the chart says, `helm test`,
the operator's in-cluster login, and the published ports (UI, API docs, MLflow)."""

from __future__ import annotations

from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.conftest import API_URL, MLFLOW_URL, UI_URL, KindCluster

pytestmark = pytest.mark.e2e
#: The uid each component runs as (the chart's pod security contexts); MinIO's image is a
#: static binary with no shell to ask.
UIDS = {"operator": "10001", "ui": "10001", "mlflow": "10001", "postgresql": "999"}


def chart_pods(kind: KindCluster) -> list[dict[str, object]]:
    pods = kind.get("pods", "-l", f"app.kubernetes.io/instance={kind.release}")["items"]
    return [p for p in pods if p["status"].get("phase") != "Succeeded"]  # Job pods are done


def test_every_chart_pod_is_ready_under_pod_security_restricted(kind: KindCluster) -> None:
    labels = kind.get("namespace", kind.namespace)["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"
    pods = chart_pods(kind)
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}  # type: ignore[index]
    assert {"operator", "ui", "mlflow", "postgresql", "minio"} <= components, components
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}  # type: ignore[index]
        assert conditions.get("Ready") == "True", (pod["metadata"]["name"], pod["status"])  # type: ignore[index]


@pytest.mark.parametrize("component", sorted(UIDS))
def test_containers_run_as_the_charts_non_root_user(kind: KindCluster, component: str) -> None:
    pods = kind.get(
        "pods", "-l", f"app.kubernetes.io/instance={kind.release},app.kubernetes.io/component={component}"
    )
    name = pods["items"][0]["metadata"]["name"]
    uid = kind.kubectl("exec", name, "--", "id", "-u").stdout.strip()
    assert uid == UIDS[component]
    probe = kind.kubectl("exec", name, "--", "touch", "/opt/probe", check=False)
    assert probe.returncode != 0, probe
    assert "Read-only file system" in probe.stderr, probe


def test_helm_test_passes(kind: KindCluster) -> None:
    done = kind.helm("test", kind.release, "-n", kind.namespace, "--logs", "--timeout", "5m")
    assert "Phase:          Succeeded" in done.stdout or "Succeeded" in done.stdout, done.stdout


def test_the_operator_logs_in_with_its_service_account(kind: KindCluster) -> None:
    deployment = kind.get(
        "deployment", "-l", f"app.kubernetes.io/instance={kind.release},app.kubernetes.io/component=operator"
    )
    name = deployment["items"][0]["metadata"]["name"]
    pod_spec = deployment["items"][0]["spec"]["template"]["spec"]
    account = pod_spec["serviceAccountName"]
    # Only the replica holding the leader Lease starts Kopf (and logs in); the other stands by.
    leader = kind.get("lease", name)["spec"]["holderIdentity"]
    pods = kind.get(
        "pods", "-l", f"app.kubernetes.io/instance={kind.release},app.kubernetes.io/component=operator"
    )
    names = sorted(
        p["metadata"]["name"] for p in pods["items"] if p["metadata"].get("deletionTimestamp") is None
    )
    assert len(names) == 2, names
    assert leader in names, (leader, names)
    log = kind.kubectl("logs", leader, "--tail=-1").stdout
    assert f"logged in with the in-cluster ServiceAccount token (namespace {kind.namespace})" in log, log[
        :3000
    ]
    standby = next(n for n in names if n != leader)
    standby_log = kind.kubectl("logs", standby, "--tail=-1").stdout
    assert "is waiting for lease" in standby_log, standby_log[:3000]
    assert "claimops operator started" not in standby_log, standby_log[:3000]
    who = f"system:serviceaccount:{kind.namespace}:{account}"
    # `can-i VERB RESOURCE/NAME` reads the part after the slash as a name: subresources by flag.
    for verb, resource, expected in [("create", "jobs", "yes"), ("patch", "pipelineruns.claimops.io --subresource=status", "yes"),
                                     ("get", "secrets", "no"), ("create", "pods --subresource=exec", "no"),
                                     ("update", f"leases.coordination.k8s.io/{name}", "yes"),
                                     ("update", "leases.coordination.k8s.io/kube-scheduler", "no")]:  # fmt: skip
        args = ["auth", "can-i", verb, *resource.split(), f"--as={who}"]
        answer = kind.kubectl(*args, check=False).stdout.strip()
        assert answer == expected, (verb, resource, answer)


def test_mlflow_answers_on_the_kind_port(kind: KindCluster) -> None:
    assert httpx.get(f"{MLFLOW_URL}/health", timeout=10).text.strip() == "OK"
    page = httpx.get(f"{MLFLOW_URL}/", timeout=10)
    assert page.status_code == 200
    assert "<title>MLflow</title>" in page.text


def test_the_ui_login_page_and_favicon_are_served(kind: KindCluster) -> None:
    login = httpx.get(f"{UI_URL}/ui/login", timeout=10)
    assert login.status_code == 200
    assert "Sign in" in login.text
    icon = httpx.get(f"{UI_URL}/static/favicon.svg", timeout=10)
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg")


def test_the_api_docs_render_with_no_internet(kind: KindCluster) -> None:
    hosts: set[str] = set()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("request", lambda request: hosts.add(urlparse(request.url).netloc))
        page.goto(f"{API_URL}/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
        operations = page.locator(".swagger-ui .opblock").count()
        browser.close()
    assert operations > 10
    assert hosts == {"localhost:8000"}, hosts
