"""KubeGateway's failure toggles without a cluster (the CoreV1Api replaced by a recorder): a
toggle patches the one ConfigMap as the signed-in user and never creates it, since the chart
creates it and grants no `create` (a missing ConfigMap is a 404 that says so)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from claimops_ui import kube
from claimops_ui.errors import Forbidden, InvalidInput, NotFound, UiError

CONFIGMAP = "claimops-failure-defaults"


class FakeCore:
    """Records calls; `patch_status` makes the patch fail with that HTTP status."""

    calls: list[tuple[str, Any]]
    patch_status: int | None = None
    data: dict[str, str]

    def __init__(self, api: client.ApiClient) -> None:
        self.user = api.default_headers.get("Impersonate-User")

    def patch_namespaced_config_map(self, name: str, namespace: str, body: Any, **_: Any) -> None:
        FakeCore.calls.append(("patch", (self.user, name, namespace, body)))
        if FakeCore.patch_status is not None:
            raise ApiException(status=FakeCore.patch_status, reason="refused")
        FakeCore.data.update(body["data"])

    def create_namespaced_config_map(self, namespace: str, body: Any, **_: Any) -> None:
        FakeCore.calls.append(("create", (self.user, namespace, body)))

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        return client.V1ConfigMap(data=dict(FakeCore.data))


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> kube.KubeGateway:
    FakeCore.calls, FakeCore.patch_status, FakeCore.data = [], None, {"TrainingError": "false"}
    monkeypatch.setattr(kube.client, "CoreV1Api", FakeCore)
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"
    return kube.KubeGateway(
        configuration, "ns", impersonate_group="claimops:operators", failure_configmap=CONFIGMAP
    )


def test_a_toggle_patches_the_configmap_as_the_user(gateway: kube.KubeGateway) -> None:
    defaults = gateway.set_failure_default("alice", "TrainingError", True)
    assert FakeCore.calls == [("patch", ("alice", CONFIGMAP, "ns", {"data": {"TrainingError": "true"}}))]
    assert defaults["TrainingError"] is True


def test_a_missing_configmap_is_not_created(gateway: kube.KubeGateway) -> None:
    FakeCore.patch_status = 404
    with pytest.raises(NotFound, match=f"ConfigMap {CONFIGMAP} does not exist.*chart creates it"):
        gateway.set_failure_default("alice", "TrainingError", True)
    assert [call for call, _ in FakeCore.calls] == ["patch"]


def test_a_refused_patch_is_forbidden(gateway: kube.KubeGateway) -> None:
    FakeCore.patch_status = 403
    with pytest.raises(Forbidden, match=f"configmap {CONFIGMAP} as alice"):
        gateway.set_failure_default("alice", "TrainingError", True)


#: How the API server answers a write the chart's approvals ValidatingAdmissionPolicy refuses.
DENIED = (
    "pipelineruns.claimops.io \"run-a\" is forbidden: ValidatingAdmissionPolicy 'claimops-approvals' with binding"
    " 'claimops-approvals' denied request: \"ada\" submitted this run and may not approve it: four-eyes"
    " (spec.approval.policy.fourEyes) needs an approver other than the submitter"
)


@pytest.mark.parametrize(("status", "expected"), [(403, Forbidden), (422, InvalidInput)], ids=["403", "422"])
def test_an_admission_refusal_is_a_4xx_with_the_policys_message(status: int, expected: type[UiError]) -> None:
    exc = ApiException(status=status, reason="Forbidden")
    exc.body = json.dumps({"kind": "Status", "status": "Failure", "message": DENIED, "code": status})
    error = kube.translate(exc, "patch pipelineruns/run-a as ada")
    assert type(error) is expected
    assert error.status == status
    assert error.detail == f"patch pipelineruns/run-a as ada: {DENIED}"
