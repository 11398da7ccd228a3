"""schemathesis against the UI's /openapi.json: no generated input gets a 5xx, and every
response (success or error) matches the schema the OpenAPI document gives for it.

The UI runs against real backends (the test control plane with the CRDs, a real `mlflow
server`) as a signed-in user with a valid CSRF token, so mutations get past the guard and reach
the API server. No operator runs in this namespace: created runs simply stay Pending.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.harness import approvals
from tests.harness.control_plane import ControlPlane
from tests.harness.mlflow_server import MlflowServer
from tests.harness.ui_server import UiServer, setup_ui_identity, ui_config

pytestmark = [pytest.mark.service, pytest.mark.cluster]
PASSWORD = "schema-7c1e"
#: Per operation; ~25 operations, so a few hundred requests in all.
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def ui(
    control_plane: ControlPlane,
    claimops_crds: tuple[str, ...],
    cluster_mlflow: MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[UiServer]:
    workdir = tmp_path_factory.mktemp("ui-schema")
    namespace = f"ui-schema-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", namespace)
    policies = approvals.install(control_plane, namespace)  # as installed: decisions are attributed
    kubeconfig = setup_ui_identity(control_plane, namespace, ["alice"], workdir)
    server = UiServer(
        ui_config(namespace, kubeconfig, cluster_mlflow.url, workdir, {"alice": PASSWORD})
    ).start()
    try:
        yield server
    finally:
        httpx.post(server.url + "/claims/stream/stop", timeout=5)  # refused unless signed in; harmless
        server.stop()
        approvals.uninstall(control_plane, policies)
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def signed_in(ui: UiServer) -> Iterator[dict[str, Any]]:
    with httpx.Client(base_url=ui.url, timeout=10) as client:
        token = client.get("/auth/session").json()["csrfToken"]
        client.post("/ui/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
        session = client.get("/auth/session").json()
        assert session["user"] == "alice"
        yield {"cookies": dict(client.cookies), "headers": {"X-CSRF-Token": session["csrfToken"]}}
        client.post("/claims/stream/stop", headers={"X-CSRF-Token": session["csrfToken"]})


def operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    # /events is an endless Server-Sent Events stream: nothing to fuzz, and it never ends.
    return [op for op in found if op.path != "/events"]


def test_no_server_errors(ui: UiServer, signed_in: dict[str, Any]) -> None:
    """Every operation, MAX_EXAMPLES generated inputs each, as the signed-in user."""
    ops = operations(ui.url)
    assert len(ops) >= 20
    failures: list[str] = []
    for operation in ops:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case: Any) -> None:
            response = case.call(
                base_url=ui.url, headers=signed_in["headers"], cookies=signed_in["cookies"], timeout=30
            )
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert failures == [], "\n\n".join(failures)
