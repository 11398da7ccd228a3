"""The ModelDeployment controller's decisions (claimops_operator.serving), without a cluster."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from claimops_operator import builders
from claimops_operator.config import OperatorConfig
from claimops_operator.pipeline import EmitEvent, JobState, ObservedJob
from claimops_operator.pods import ContainerWaiting
from claimops_operator.serving import (
    ApplyServer,
    CreateRollbackJob,
    ObservedRollout,
    Target,
    decide_serving,
    desired_hash,
    rollback_job_name,
)
from claimops_stages.api_names import (
    API_VERSION,
    LABEL_MODEL_DEPLOYMENT,
    LABEL_RUN,
    LABEL_STAGE,
    MODEL_DEPLOYMENT,
    RELEASE,
    REQUESTED_BY_RUN,
    SPEC_HASH,
)
from claimops_stages.contract import ResultStatus, StageResult

NOW = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
IMAGE = "claimops/stages:test"


def mdep(
    role: str = "production",
    version: str | None = "2",
    status: dict[str, Any] | None = None,
    rollback: dict[str, Any] | None = None,
    generation: int = 3,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": MODEL_DEPLOYMENT.kind,
        "metadata": {
            "name": f"claim-settlement-{role}",
            "namespace": "claims",
            "uid": "u-1",
            "generation": generation,
            "annotations": {REQUESTED_BY_RUN: "demo"},
        },
        "spec": {
            "role": role,
            "model": {"name": "claim-settlement", "version": version},
            "replicas": 1,
            **spec,
        },
        "status": status or {},
    }
    if version is None:
        body["spec"]["model"] = {"name": "claim-settlement", "alias": "champion"}
    if rollback:
        body["spec"]["rollback"] = rollback
    return body


def rollout_for(body: dict[str, Any], target: Target, ready: int = 1, done: bool = True) -> ObservedRollout:
    wanted = desired_hash(body["spec"], target, IMAGE)
    return ObservedRollout(
        generation=2,
        observed_generation=2 if done else 1,
        replicas=1,
        ready_replicas=ready,
        updated_replicas=1 if done else 0,
        available_replicas=ready,
        spec_hash=wanted,
    )


def rollback_job(state: JobState, version: str | None = "1", passed: bool = True) -> ObservedJob:
    result = None
    if state != "Active":
        result = StageResult(
            "rollback",
            ResultStatus.SUCCEEDED if passed else ResultStatus.FAILED,
            "Passed" if passed else "NoPreviousChampion",
            "champion -> v1" if passed else "champion v2 has no previous champion",
            model_version=version if passed else None,
        )
    name = rollback_job_name("claim-settlement-production", "r1")
    return ObservedJob("rollback", 1, name, state, result)


SERVING_2 = {
    "servingVersion": "2",
    "history": [
        {"version": "1", "servedFrom": "t0", "servedUntil": "t1"},
        {"version": "2", "servedFrom": "t1"},
    ],
}


def rollback_requested(role: str = "production", **rollback: str) -> dict[str, Any]:
    """A ModelDeployment serving version 2 (after 1) with rollback request r1 in its spec."""
    return mdep(role=role, status=copy.deepcopy(SERVING_2), rollback={"requestId": "r1", **rollback})


#: SERVING_2 after rollback request r1 was handled: version 1 serves again.
ROLLED_BACK_TO_1 = {
    **SERVING_2,
    "servingVersion": "1",
    "rolledBackFrom": "2",
    "rolledBackTo": "1",
    "observedRollbackRequestId": "r1",
}


MISSING = "registry.invalid/claimops/stages:missing"


def waiting(reason: str, image: str = IMAGE, message: str = "") -> ContainerWaiting:
    """A model server pod's container waiting with the kubelet's `reason`."""
    return ContainerWaiting("claim-settlement-production-6d9f-x7k2p", "model-server", image, reason, message)


def cond(status: dict[str, Any], type_: str) -> tuple[str, str]:
    c = next(c for c in status["conditions"] if c["type"] == type_)
    return c["status"], c["reason"]


@dataclass
class Case:
    id: str
    body: dict[str, Any]
    rollout: str = "none"  # none | settled | rolling | stale
    job: ObservedJob | None = None
    waiting: ContainerWaiting | None = None
    # Expectations.
    apply: str | None = None  # the version (or "alias:champion") applied, or None
    rollback_job: bool = False
    ready: tuple[str, str] | None = None
    progressing: tuple[str, str] | None = None
    rolled_back: tuple[str, str] | None = None
    serving: str | None = None
    events: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("new-deployment-is-applied", mdep(), apply="2", ready=("False", "RollingOut")),
    Case(
        "rolling-out-is-not-ready",
        mdep(),
        rollout="rolling",
        ready=("False", "RollingOut"),
    ),
    Case(
        "settled-rollout-serves-and-records-history",
        mdep(),
        rollout="settled",
        ready=("True", "Serving"),
        serving="2",
        events=["Normal/Serving"],
        status={
            "history": [
                {
                    "version": "2",
                    "servedFrom": "2026-11-26T05:00:00Z",
                    "reason": "Rollout",
                    "pipelineRun": "demo",
                }
            ]
        },
    ),
    Case(
        "a-new-version-closes-the-history-entry",
        mdep(version="3", status=copy.deepcopy(SERVING_2)),
        rollout="settled",
        ready=("True", "Serving"),
        serving="3",
        events=["Normal/Serving"],
        status={"url": "http://claim-settlement-production.claims.svc:8080"},
    ),
    Case(
        "changed-spec-is-reapplied",
        mdep(version="3", status=copy.deepcopy(SERVING_2)),
        rollout="stale",
        apply="3",
        ready=("False", "RollingOut"),
        serving="2",
    ),
    Case(
        "alias-deployment-serves-the-alias",
        mdep(version=None),
        apply="alias:champion",
        ready=("False", "RollingOut"),
        status={"servingAlias": "champion"},
    ),
    Case(
        "production-rollback-starts-a-job-first",
        rollback_requested(),
        rollout="settled",
        rollback_job=True,
        events=["Normal/RollbackStarted"],
        serving="2",
    ),
    Case(
        "production-rollback-waits-for-its-job",
        rollback_requested(),
        rollout="settled",
        job=rollback_job("Active"),
        serving="2",
    ),
    Case(
        "production-rollback-serves-what-the-registry-chose",
        rollback_requested(),
        rollout="settled",
        job=rollback_job("Succeeded", version="1"),
        apply="1",
        ready=("False", "RollingOut"),
        serving="2",
        rolled_back=("Unknown", "RollingBack"),
        status={"rolledBackFrom": "2", "rolledBackTo": "1", "observedRollbackRequestId": "r1"},
    ),
    Case(
        "failed-rollback-keeps-serving-and-says-why",
        rollback_requested(),
        rollout="settled",
        job=rollback_job("Failed", passed=False),
        ready=("True", "Serving"),
        serving="2",
        events=["Warning/RollbackFailed"],
        status={"observedRollbackRequestId": "r1"},
    ),
    Case(
        "staging-rollback-goes-to-the-previous-version-without-a-job",
        rollback_requested("staging"),
        rollout="settled",
        apply="1",
        ready=("False", "RollingOut"),
        serving="2",
        rolled_back=("Unknown", "RollingBack"),
        status={"rolledBackFrom": "2", "rolledBackTo": "1"},
    ),
    Case(
        "staging-rollback-to-a-named-version",
        rollback_requested("staging", toVersion="7"),
        rollout="settled",
        apply="7",
        ready=("False", "RollingOut"),
        serving="2",
        rolled_back=("Unknown", "RollingBack"),
        status={"rolledBackTo": "7"},
    ),
    Case(
        "rollback-with-no-earlier-version-is-refused",
        mdep(
            role="staging",
            status={"servingVersion": "2", "history": [{"version": "2", "servedFrom": "t"}]},
            rollback={"requestId": "r1"},
        ),
        rollout="settled",
        ready=("True", "Serving"),
        serving="2",
        events=["Warning/RollbackFailed"],
        status={"observedRollbackRequestId": "r1"},
    ),
    Case(
        "a-handled-rollback-request-is-not-repeated",
        mdep(status=copy.deepcopy(ROLLED_BACK_TO_1), rollback={"requestId": "r1"}),
        rollout="settled-on-1",
        ready=("True", "Serving"),
        serving="1",
    ),
    Case(
        "the-next-promotion-ends-the-rollback",
        mdep(version="3", status=copy.deepcopy(ROLLED_BACK_TO_1), rollback={"requestId": "r1"}),
        rollout="settled-on-1",
        apply="3",
        ready=("False", "RollingOut"),
        serving="1",
    ),
]


STUCK = {"Ready": ("False", "ImagePullFailed"), "Progressing": ("False", "ImagePullFailed")}
CASES += [
    # --- model server pods that cannot start ---------------------------------------------
    *[
        Case(
            f"{kubelet}-stops-the-rollout-with-{reason}",
            mdep(),
            rollout="rolling",
            waiting=waiting(kubelet),
            ready=("False", reason),
            progressing=("False", reason),
            events=[f"Warning/{reason}"],
        )
        for kubelet, reason in [
            ("ImagePullBackOff", "ImagePullFailed"),
            ("ErrImagePull", "ImagePullFailed"),
            ("ErrImageNeverPull", "ImagePullFailed"),
            ("InvalidImageName", "ImagePullFailed"),
            ("CreateContainerConfigError", "ContainerCannotStart"),
            ("CreateContainerError", "ContainerCannotStart"),
            ("RunContainerError", "ContainerCannotStart"),
        ]
    ],
    Case(
        "still-stuck-emits-no-second-event",
        mdep(status={"conditions": [{"type": "Ready", "status": "False", "reason": "ImagePullFailed"}]}),
        rollout="rolling",
        waiting=waiting("ImagePullBackOff"),
        ready=STUCK["Ready"],
        progressing=STUCK["Progressing"],
    ),
    Case(
        "no-deployment-yet-ignores-what-a-pod-waits-for",
        mdep(image=MISSING),
        rollout="none",
        waiting=waiting("ErrImagePull", image=MISSING),
        apply="2",
        ready=("False", "RollingOut"),
    ),
    Case(
        "an-unpullable-spec-image-override-of-the-applied-deployment",
        mdep(image=MISSING),
        rollout="rolling",
        waiting=waiting("ErrImagePull", image=MISSING),
        ready=STUCK["Ready"],
        progressing=STUCK["Progressing"],
        events=["Warning/ImagePullFailed"],
    ),
    Case(
        "container-creating-is-progress",
        mdep(),
        rollout="rolling",
        waiting=waiting("ContainerCreating"),
        ready=("False", "RollingOut"),
        progressing=("True", "RollingOut"),
    ),
    Case(
        "a-stuck-pod-of-an-earlier-image-is-being-replaced",
        mdep(),
        rollout="rolling",
        waiting=waiting("ImagePullBackOff", image=MISSING),
        ready=("False", "RollingOut"),
        progressing=("True", "RollingOut"),
    ),
    Case(
        "a-settled-rollout-serves-whatever-a-pod-waits-for",
        mdep(),
        rollout="settled",
        waiting=waiting("ImagePullBackOff"),
        ready=("True", "Serving"),
        progressing=("False", "RolloutComplete"),
        serving="2",
        events=["Normal/Serving"],
    ),
    Case(
        "a-rollback-job-that-cannot-pull-is-refused-at-once",
        rollback_requested(),
        rollout="settled",
        job=ObservedJob(
            "rollback",
            1,
            rollback_job_name("claim-settlement-production", "r1"),
            "Active",
            waiting=waiting("ImagePullBackOff", image=MISSING),
        ),
        ready=("True", "Serving"),
        serving="2",
        events=["Warning/RollbackFailed"],
        status={"observedRollbackRequestId": "r1"},
    ),
]


def _target(label: str) -> Target:
    return Target(None, label.split(":", 1)[1]) if label.startswith("alias:") else Target(label, None)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide_serving(case: Case) -> None:
    body = case.body
    spec_version = body["spec"]["model"].get("version")
    rollout = {
        "none": None,
        "settled": rollout_for(body, Target(spec_version, None if spec_version else "champion")),
        "settled-on-1": rollout_for(body, Target("1", None)),
        "rolling": rollout_for(body, Target(spec_version, None), ready=0, done=False),
        "stale": rollout_for(body, Target("2", None)),
    }[case.rollout]
    decision = decide_serving(body, rollout, case.job, NOW, IMAGE, case.waiting)

    applied = [a for a in decision.actions if isinstance(a, ApplyServer)]
    if case.apply is None:
        assert applied == []
    else:
        assert [a.target.version or f"alias:{a.target.alias}" for a in applied] == [case.apply]
        assert applied[0].spec_hash == desired_hash(body["spec"], applied[0].target, IMAGE)
    jobs = [a for a in decision.actions if isinstance(a, CreateRollbackJob)]
    assert bool(jobs) == case.rollback_job
    events = [f"{a.type}/{a.reason}" for a in decision.actions if isinstance(a, EmitEvent)]
    assert events == case.events
    status = decision.status
    assert status["observedGeneration"] == body["metadata"]["generation"]
    if case.ready is not None:
        assert cond(status, "Ready") == case.ready
    if case.progressing is not None:
        assert cond(status, "Progressing") == case.progressing
    if case.rolled_back is not None:
        assert cond(status, "RolledBack") == case.rolled_back
    assert status.get("servingVersion") == case.serving
    for key, value in case.status.items():
        assert status.get(key) == value, key
    if case.id == "a-new-version-closes-the-history-entry":
        assert [h["version"] for h in status["history"]] == ["1", "2", "3"]
        assert status["history"][1]["servedUntil"] == "2026-11-26T05:00:00Z"
    if case.id == "production-rollback-starts-a-job-first":
        assert jobs[0].job_name == rollback_job_name("claim-settlement-production", "r1")
        assert jobs[0].inputs.model_name == "claim-settlement"


def test_a_stuck_model_server_says_which_image_and_why() -> None:
    message = f'failed to pull and unpack image "{MISSING}": not found'
    decision = decide_serving(
        mdep(image=MISSING), rollout_for(mdep(image=MISSING), Target("2", None), ready=0, done=False),
        None, NOW, IMAGE, waiting("ErrImagePull", MISSING, message),
    )  # fmt: skip
    expected = (
        f'Cannot pull image "{MISSING}" for container model-server of pod '
        f"claim-settlement-production-6d9f-x7k2p (ErrImagePull: {message})"
    )
    for type_ in ("Ready", "Progressing"):
        found = next(c for c in decision.status["conditions"] if c["type"] == type_)
        assert (found["status"], found["reason"], found["message"]) == ("False", "ImagePullFailed", expected)
    assert [(a.type, a.reason, a.message) for a in decision.actions if isinstance(a, EmitEvent)] == [
        ("Warning", "ImagePullFailed", expected)
    ]
    rolled_back = decide_serving(
        rollback_requested(),
        None,
        ObservedJob("rollback", 1, "rb", "Active", waiting=waiting("ImagePullBackOff", MISSING)),
        NOW,
        IMAGE,
    )
    assert cond(rolled_back.status, "RolledBack") == ("False", "ImagePullFailed")


def test_a_completed_rollback_is_recorded_in_history_as_a_rollback() -> None:
    body = rollback_requested()
    first = decide_serving(body, rollout_for(body, Target("2", None)), rollback_job("Succeeded"), NOW, IMAGE)
    body["status"] = first.status
    settled = rollout_for(body, Target("1", None))
    second = decide_serving(body, settled, rollback_job("Succeeded"), NOW, IMAGE)
    assert second.status["servingVersion"] == "1"
    assert second.status["history"][-1] == {
        "version": "1",
        "servedFrom": "2026-11-26T05:00:00Z",
        "reason": "Rollback",
    }
    assert cond(second.status, "Ready") == ("True", "Serving")
    assert [a for a in second.actions if isinstance(a, ApplyServer)] == []  # no re-apply loop
    # `kubectl wait --for=condition=RolledBack` returns only now that version 1 serves.
    assert cond(first.status, "RolledBack") == ("Unknown", "RollingBack")
    assert cond(second.status, "RolledBack") == ("True", "RolledBack")
    assert [(a.reason, a.message) for a in second.actions if isinstance(a, EmitEvent)] == [
        ("Serving", "Serving version 1"),
        ("RolledBack", "Rolled back from version 2 to version 1"),
    ]


def test_a_promotion_before_the_rollback_target_serves_supersedes_the_rollback() -> None:
    body = rollback_requested()
    body["status"] = decide_serving(
        body, rollout_for(body, Target("2", None)), rollback_job("Succeeded"), NOW, IMAGE
    ).status
    body["spec"]["model"]["version"] = "3"
    promoted = decide_serving(
        body, rollout_for(body, Target("1", None), ready=0, done=False), None, NOW, IMAGE
    )
    assert cond(promoted.status, "RolledBack") == ("False", "Superseded")
    assert [a.target.version for a in promoted.actions if isinstance(a, ApplyServer)] == ["3"]


def test_model_server_deployment_is_restricted_and_probed() -> None:
    config = OperatorConfig(stage_image=IMAGE, mlflow_tracking_uri="http://mlflow:5000")
    body = mdep(abTest={"challengerVersion": "3", "trafficPercent": 10})
    deployment = builders.model_server_deployment(
        mdep=body, version="2", alias=None, restart_token="", spec_hash="h", config=config
    )
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "claimops_stages.serving"]
    assert container["args"] == [
        "--model-name",
        "claim-settlement",
        "--model-version",
        "2",
        "--ab-challenger-version",
        "3",
        "--ab-traffic-percent",
        "10",
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert deployment["metadata"]["annotations"][SPEC_HASH] == "h"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    service = builders.model_server_service(body)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_rollback_job_belongs_to_the_model_deployment_not_a_run() -> None:
    from claimops_stages.contract import StageInputs

    job = builders.rollback_job(
        mdep_name="claim-settlement-production",
        namespace="claims",
        job_name="claim-settlement-production-rollback-1",
        inputs=StageInputs(run="ModelDeployment/claim-settlement-production", requested_by="oncall"),
        config=OperatorConfig(),
    )
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert LABEL_RUN not in labels
        assert labels[LABEL_MODEL_DEPLOYMENT] == "claim-settlement-production"
        assert labels[LABEL_STAGE] == "rollback"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "claimops_stages", "rollback"]
    assert "--requested-by" in container["args"]


def test_a_rollback_records_who_asked_and_why_and_tells_the_rollback_job() -> None:
    body = rollback_requested(reason="v2 over-approves dental claims")
    body["spec"]["rollback"]["requestedBy"] = {"username": "oncall@example.com", "groups": ["sre"]}
    first = decide_serving(body, rollout_for(body, Target("2", None)), None, NOW, IMAGE)
    job = next(a for a in first.actions if isinstance(a, CreateRollbackJob))
    assert (job.inputs.requested_by, job.inputs.reason) == (
        "oncall@example.com",
        "v2 over-approves dental claims",
    )
    first = decide_serving(body, rollout_for(body, Target("2", None)), rollback_job("Succeeded"), NOW, IMAGE)
    body["status"] = first.status
    second = decide_serving(body, rollout_for(body, Target("1", None)), rollback_job("Succeeded"), NOW, IMAGE)
    assert second.status["history"][-1] == {
        "version": "1",
        "servedFrom": "2026-11-26T05:00:00Z",
        "reason": "Rollback",
        "requestedBy": "oncall@example.com",
        "comment": "v2 over-approves dental claims",
    }


def test_a_promotion_keeps_its_release_summary_in_history() -> None:
    release = {
        "pipelineRun": "demo",
        "submitter": "sam",
        "approvedBy": ["ada", "bob"],
        "releaseDigest": "sha256:" + "ab" * 32,
        "releaseUri": "runs:/r1/release/release-v3.intoto.json",
    }
    body = mdep(version="3", status=copy.deepcopy(SERVING_2))
    body["metadata"]["annotations"][RELEASE] = json.dumps(release)
    decision = decide_serving(body, rollout_for(body, Target("3", None)), None, NOW, IMAGE)
    assert decision.status["history"][-1] == {
        "version": "3",
        "servedFrom": "2026-11-26T05:00:00Z",
        "reason": "Rollout",
        **release,
    }
    # A summary left by another run (a later apply by hand) is not attributed to this one.
    body = mdep(version="3", status=copy.deepcopy(SERVING_2))
    body["metadata"]["annotations"][RELEASE] = json.dumps({**release, "pipelineRun": "other"})
    decision = decide_serving(body, rollout_for(body, Target("3", None)), None, NOW, IMAGE)
    assert "approvedBy" not in decision.status["history"][-1]


def test_status_says_which_protocols_the_server_speaks_and_where() -> None:
    status = decide_serving(mdep(), None, None, NOW, IMAGE).status
    assert status["protocols"] == [
        {"name": "predict", "title": "ClaimOps predict", "path": "/predict"},
        {
            "name": "v2",
            "title": "Open Inference Protocol v2 (REST)",
            "path": "/v2/models/claim-settlement/infer",
        },
        {"name": "mlflow", "title": "MLflow scoring protocol", "path": "/invocations"},
    ]
