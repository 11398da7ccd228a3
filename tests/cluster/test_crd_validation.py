"""Server-side validation of the ClaimOps CRDs against a real kube-apiserver.

The CRD YAML in ``crds/`` is applied as it is; every malformed object below must be refused by
the API server itself (OpenAPI schema or CEL ``x-kubernetes-validations``), with an error that
names the offending field. Tables follow the Tekton style: one named row per kind of mistake.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from claimops_stages.api_names import RESOURCES
from tests.harness.control_plane import ControlPlane

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
EXAMPLES = REPO / "manifests" / "examples"
CRD_NAMES = tuple(r.crd_name for r in RESOURCES)

# The smallest valid PipelineRun: everything else comes from the schema's defaults.
BASE_RUN = """
apiVersion: claimops.io/v1alpha1
kind: PipelineRun
metadata:
  name: run
spec:
  commit:
    sha: 0123abcd
"""

BASE_DEPLOYMENT = """
apiVersion: claimops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: prod
spec:
  role: production
  model:
    name: claim-settlement
    version: "3"
"""

# Lines of a validation error that are not errors of their own.
_NOT_AN_ERROR = "some validation rules were not checked because the object was invalid"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what `kubectl patch --type merge` does): None deletes a key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def manifest(base: str, patch: dict[str, Any]) -> str:
    return json.dumps(merge_patch(yaml.safe_load(base), patch))


def validation_errors(stderr: str) -> list[str]:
    """The field errors of an `... is invalid:` answer, one string per error."""
    assert " is invalid" in stderr, f"not a validation error:\n{stderr}"
    tail = stderr.split(" is invalid:", 1)[1].strip()
    lines = (
        [line.removeprefix("* ").strip() for line in tail.splitlines()] if tail.startswith("*") else [tail]
    )
    return [line for line in lines if line and _NOT_AN_ERROR not in line]


def names_field(error: str, field: str) -> bool:
    """Whether an error line names `field` (as its path, or in the message of a root-level rule)."""
    return re.search(rf"(^|\s){re.escape(field)}(?![\w.\[])", error) is not None


def assert_rejected_for(result: Any, field: str, says: str) -> None:
    """The request was refused by validation with an error that names `field` and says `says`."""
    assert result.returncode != 0, f"accepted, but {field} should have been refused:\n{result.stdout}"
    errors = validation_errors(result.stderr)
    assert any(names_field(e, field) and says in e for e in errors), (
        f"no error names {field!r} and says {says!r}:\n" + "\n".join(errors)
    )


def get(plane: ControlPlane, namespace: str, resource: str) -> dict[str, Any]:
    out = plane.kubectl("get", resource, "-n", namespace, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


def create(plane: ControlPlane, namespace: str, body: str, check: bool = True) -> Any:
    return plane.kubectl("create", "-n", namespace, "-f", "-", input=body, check=check)


def patch(plane: ControlPlane, namespace: str, resource: str, body: dict[str, Any], *extra: str) -> Any:
    return plane.kubectl(
        "patch", resource, "-n", namespace, "--type", "merge", "-p", json.dumps(body), *extra, check=False
    )


@pytest.fixture
def namespace(plain_namespace: str) -> str:
    """A namespace without the chart's admission policies: these tests check what the CRD
    schema alone refuses (tests/cluster/test_approvals.py checks the policies)."""
    return plain_namespace


@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with the CRDs from crds/ applied and Established."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{name}" for name in CRD_NAMES)
    )
    return control_plane


# -- valid objects ------------------------------------------------------------------------------


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_is_accepted(crds: ControlPlane, namespace: str, example: str) -> None:
    path = str(EXAMPLES / example)
    dry = crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", path)
    assert "(server dry run)" in dry.stdout
    crds.kubectl("create", "-n", namespace, "-f", path)
    doc = yaml.safe_load((EXAMPLES / example).read_text())
    created = get(crds, namespace, f"{doc['kind'].lower()}/{doc['metadata']['name']}")
    assert created["metadata"]["generation"] == 1


def test_pipelinerun_defaults_are_applied(crds: ControlPlane, namespace: str) -> None:
    create(crds, namespace, BASE_RUN)
    spec = get(crds, namespace, "cpr/run")["spec"]
    assert spec["model"] == {"name": "claim-settlement"}
    assert spec["dataset"] == {"rows": 20000, "seed": 42, "drift": "none"}
    assert spec["training"] == {"nEstimators": 200, "maxDepth": 12, "quickSampleFraction": 0.2}
    assert spec["gates"] == {"minAuc": 0.75, "maxAucDrop": 0.02, "minShadowAgreement": 0.9, "maxPsi": 0.2}
    assert spec["approval"] == {"decision": "Pending"}
    assert spec["timeouts"] == {"stageSeconds": 1800, "approvalSeconds": 86400}
    assert (spec["retries"], spec["cancel"], spec["continueToCD"], spec["autoContinueToCD"]) == (
        1,
        False,
        False,
        False,
    )
    assert "failureInjection" not in spec


def test_modeldeployment_defaults_are_applied(crds: ControlPlane, namespace: str) -> None:
    create(crds, namespace, manifest(BASE_DEPLOYMENT, {"spec": {"model": {"name": None}}}))
    spec = get(crds, namespace, "mdep/prod")["spec"]
    assert spec["replicas"] == 1
    assert spec["model"] == {"name": "claim-settlement", "version": "3"}


# -- malformed PipelineRuns on create -----------------------------------------------------------


class Malformed(NamedTuple):
    name: str
    patch: dict[str, Any]  # merged into the base object (None deletes)
    field: str  # the field path the error must name
    says: str  # a fragment of the error


def _spec(**fields: Any) -> dict[str, Any]:
    return {"spec": fields}


RUN_CREATE_CASES = [
    Malformed("spec-missing", {"spec": None}, "spec", "Required value"),
    Malformed("commit-missing", _spec(commit=None), "spec.commit", "Required value"),
    Malformed(
        "sha-missing", _spec(commit={"sha": None, "message": "wip"}), "spec.commit.sha", "Required value"
    ),
    Malformed("sha-uppercase", _spec(commit={"sha": "0123ABCD"}), "spec.commit.sha", "should match"),
    Malformed("sha-too-short", _spec(commit={"sha": "0123ab"}), "spec.commit.sha", "at least 7"),
    Malformed("sha-too-long", _spec(commit={"sha": "a" * 41}), "spec.commit.sha", "more than 40"),
    Malformed("model-name-not-dns", _spec(model={"name": "Claim_Model"}), "spec.model.name", "should match"),
    Malformed(
        "stage-image-with-spaces", _spec(stageImage="claimops stages"), "spec.stageImage", "should match"
    ),
    Malformed(
        "rows-below-range", _spec(dataset={"rows": 999}), "spec.dataset.rows", "greater than or equal to 1000"
    ),
    Malformed(
        "rows-above-range", _spec(dataset={"rows": 2000001}), "spec.dataset.rows", "less than or equal to"
    ),
    Malformed(
        "rows-not-integer", _spec(dataset={"rows": "lots"}), "spec.dataset.rows", "must be of type integer"
    ),
    Malformed(
        "seed-negative", _spec(dataset={"seed": -1}), "spec.dataset.seed", "greater than or equal to 0"
    ),
    Malformed(
        "window-format",
        _spec(dataset={"window": "2025-01-01 2025-06-30"}),
        "spec.dataset.window",
        "should match",
    ),
    Malformed(
        "window-month-13",
        _spec(dataset={"window": "2025-13-01/2025-14-01"}),
        "spec.dataset.window",
        "should match",
    ),
    Malformed(
        "window-start-after-end",  # CEL
        _spec(dataset={"window": "2025-06-30/2025-01-01"}),
        "spec.dataset.window",
        "start date must be before its end date",
    ),
    Malformed(
        "drift-not-in-enum", _spec(dataset={"drift": "extreme"}), "spec.dataset.drift", "Unsupported value"
    ),
    Malformed(
        "n-estimators-above-range", _spec(training={"nEstimators": 1001}), "spec.training.nEstimators", "1000"
    ),
    Malformed(
        "max-depth-below-range", _spec(training={"maxDepth": 1}), "spec.training.maxDepth", "greater than"
    ),
    Malformed(
        "quick-sample-fraction-below-range",
        _spec(training={"quickSampleFraction": 0.001}),
        "spec.training.quickSampleFraction",
        "greater than or equal to 0.01",
    ),
    Malformed(
        # The schema's `minimum: 0.01` lets the JSON integer 0 through (seen on v1.34); the
        # cross-field CEL rule still refuses it.
        "quick-sample-fraction-integer-zero",
        _spec(training={"quickSampleFraction": 0}),
        "spec.training.quickSampleFraction",
        "must be at least 200",
    ),
    Malformed(
        "quick-sample-too-few-rows",  # CEL across dataset and training
        _spec(dataset={"rows": 1000}, training={"quickSampleFraction": 0.1}),
        "spec.training.quickSampleFraction",
        "must be at least 200",
    ),
    Malformed(
        "min-auc-above-one", _spec(gates={"minAuc": 1.5}), "spec.gates.minAuc", "less than or equal to 1"
    ),
    Malformed(
        "max-auc-drop-negative", _spec(gates={"maxAucDrop": -0.1}), "spec.gates.maxAucDrop", "greater than"
    ),
    Malformed("max-psi-zero", _spec(gates={"maxPsi": 0}), "spec.gates.maxPsi", "greater than 0"),
    Malformed(
        "continue-not-boolean", _spec(continueToCD="yes"), "spec.continueToCD", "must be of type boolean"
    ),
    Malformed(
        "approval-not-in-enum",
        _spec(approval={"decision": "Maybe"}),
        "spec.approval.decision",
        "Unsupported value",
    ),
    Malformed(
        "rejected-without-comment",  # CEL
        _spec(approval={"decision": "Rejected", "comment": "  "}),
        "spec.approval.comment",
        "required when the decision is Rejected",
    ),
    Malformed(
        "approval-comment-too-long", _spec(approval={"comment": "x" * 1025}), "spec.approval.comment", "1024"
    ),
    Malformed(
        "failure-injection-unknown",
        _spec(failureInjection=["SchemaValidation", "DiskFull"]),
        "spec.failureInjection[1]",
        "Unsupported value",
    ),
    Malformed(
        "failure-injection-duplicate",
        _spec(failureInjection=["TrainingError", "TrainingError"]),
        "spec.failureInjection[1]",
        "Duplicate value",
    ),
    Malformed(
        "stage-timeout-too-short", _spec(timeouts={"stageSeconds": 10}), "spec.timeouts.stageSeconds", "30"
    ),
    Malformed(
        "approval-timeout-too-long",
        _spec(timeouts={"approvalSeconds": 2592001}),
        "spec.timeouts.approvalSeconds",
        "less than or equal to",
    ),
    Malformed("retries-above-range", _spec(retries=6), "spec.retries", "less than or equal to 5"),
    Malformed(
        "name-too-long-for-job-names",  # CEL on metadata
        {"metadata": {"name": "r" * 41}},
        "metadata.name",
        "at most 40",
    ),
]


@pytest.mark.parametrize("case", RUN_CREATE_CASES, ids=[c.name for c in RUN_CREATE_CASES])
def test_malformed_pipelinerun_is_rejected(crds: ControlPlane, namespace: str, case: Malformed) -> None:
    result = create(crds, namespace, manifest(BASE_RUN, case.patch), check=False)
    assert_rejected_for(result, case.field, case.says)


# -- forbidden PipelineRun updates --------------------------------------------------------------


class BadUpdate(NamedTuple):
    name: str
    before: dict[str, Any]  # merged into the base object that is created
    steps: list[dict[str, Any]]  # merge patches that must succeed first
    patch: dict[str, Any]  # the merge patch that must be refused
    field: str
    says: str


RUN_UPDATE_CASES = [
    BadUpdate("commit-immutable", {}, [], _spec(commit={"sha": "0123abce"}), "spec.commit", "immutable"),
    BadUpdate(
        "commit-message-immutable", {}, [], _spec(commit={"message": "amended"}), "spec.commit", "immutable"
    ),
    BadUpdate("model-immutable", {}, [], _spec(model={"name": "other-model"}), "spec.model", "immutable"),
    BadUpdate("dataset-immutable", {}, [], _spec(dataset={"rows": 30000}), "spec.dataset", "immutable"),
    BadUpdate(
        "dataset-drift-immutable", {}, [], _spec(dataset={"drift": "severe"}), "spec.dataset", "immutable"
    ),
    BadUpdate("training-immutable", {}, [], _spec(training={"maxDepth": 20}), "spec.training", "immutable"),
    BadUpdate("gates-immutable", {}, [], _spec(gates={"minAuc": 0.5}), "spec.gates", "immutable"),
    BadUpdate(
        "stage-image-immutable",
        _spec(stageImage="claimops/stages:0.1.0"),
        [],
        _spec(stageImage="claimops/stages:other"),
        "spec.stageImage",
        "immutable",
    ),
    BadUpdate(
        "submitter-edited",
        _spec(submitter={"username": "sam"}),
        [],
        _spec(submitter={"username": "mallory"}),
        "spec.submitter",
        "never changes",
    ),
    BadUpdate(
        "submitter-added-later",
        {},
        [],
        _spec(submitter={"username": "mallory"}),
        "spec.submitter",
        "neither added",
    ),
    BadUpdate(
        "decision-rewritten",
        {},
        [_spec(decisions=[{"decision": "Rejected", "user": "qa", "comment": "no"}])],
        _spec(decisions=[{"decision": "Approved", "user": "qa"}]),
        "spec.decisions",
        "append-only",
    ),
    BadUpdate(
        "decisions-removed",
        {},
        [_spec(decisions=[{"decision": "Approved", "user": "ada"}])],
        _spec(decisions=None),
        "spec.decisions",
        "append-only",
    ),
    BadUpdate(
        "approval-policy-changed",
        _spec(approval={"policy": {"quorum": 2}}),
        [],
        _spec(approval={"policy": {"quorum": 1}}),
        "spec.approval.policy",
        "immutable",
    ),
    BadUpdate(
        "cancel-undone", {}, [_spec(cancel=True)], _spec(cancel=False), "spec.cancel", "cannot be set back"
    ),
    BadUpdate(
        "cancel-removed", {}, [_spec(cancel=True)], _spec(cancel=None), "spec.cancel", "cannot be set back"
    ),
    BadUpdate(
        "continue-to-cd-undone",
        {},
        [_spec(continueToCD=True)],
        _spec(continueToCD=False),
        "spec.continueToCD",
        "cannot be set back",
    ),
    BadUpdate(
        "retries-out-of-range", {}, [], _spec(retries=-1), "spec.retries", "greater than or equal to 0"
    ),
]


@pytest.mark.parametrize("case", RUN_UPDATE_CASES, ids=[c.name for c in RUN_UPDATE_CASES])
def test_forbidden_pipelinerun_update_is_rejected(
    crds: ControlPlane, namespace: str, case: BadUpdate
) -> None:
    create(crds, namespace, manifest(BASE_RUN, case.before))
    for step in case.steps:
        result = patch(crds, namespace, "cpr/run", step)
        assert result.returncode == 0, result.stderr
    assert_rejected_for(patch(crds, namespace, "cpr/run", case.patch), case.field, case.says)


def test_documented_pipelinerun_patches_are_accepted(crds: ControlPlane, namespace: str) -> None:
    """The README's continue / approve / cancel commands, and the mutable knobs."""
    create(crds, namespace, BASE_RUN)
    for body in (
        _spec(continueToCD=True),
        _spec(continueToCD=True),  # idempotent
        _spec(failureInjection=["MetricRegression"], retries=3, timeouts={"stageSeconds": 600}),
        _spec(approval={"decision": "Approved", "by": "ada", "comment": "LGTM"}),
        _spec(approval={"decision": "Approved", "comment": "LGTM, AUC +0.01"}),  # the comment may change
        _spec(cancel=True),
    ):
        result = patch(crds, namespace, "cpr/run", body)
        assert result.returncode == 0, f"{body}: {result.stderr}"
    spec = get(crds, namespace, "cpr/run")["spec"]
    assert spec["approval"] == {"decision": "Approved", "by": "ada", "comment": "LGTM, AUC +0.01"}
    assert (spec["continueToCD"], spec["cancel"], spec["retries"]) == (True, True, 3)

    create(crds, namespace, manifest(BASE_RUN, {"metadata": {"name": "rejected"}}))
    result = patch(
        crds, namespace, "cpr/rejected", _spec(approval={"decision": "Rejected", "comment": "drift"})
    )
    assert result.returncode == 0, result.stderr


# -- status, conditions and printer columns -----------------------------------------------------

RUN_STATUS: dict[str, Any] = {
    "observedGeneration": 1,
    "phase": "Succeeded",
    "currentStage": "promote-production",
    "startedAt": "2026-01-02T03:04:05Z",
    "finishedAt": "2026-01-02T03:24:05.123456+00:00",
    "stages": [
        {
            "name": "quick-train",
            "state": "Succeeded",
            "attempt": 1,
            "job": "run-quick-train-1",
            "startedAt": "2026-01-02T03:05:00Z",
            "finishedAt": "2026-01-02T03:06:00Z",
            "reason": "Completed",
            "message": "trained on 4000 rows",
            "metrics": {"auc": 0.8123, "rows": 4000},
            "outputs": {"model_uri": "runs:/abc/model"},
            "mlflowRunId": "abc",
            "modelVersion": "4",
        },
        {"name": "manual-approval", "state": "Waiting", "attempt": 0},
    ],
    "mlflow": {
        "experimentId": "1",
        "ciRunId": "abc",
        "runIds": {"quick-train": "abc", "full-train": "def"},
        "modelName": "claim-settlement",
        "modelVersion": "4",
    },
    "evaluation": {
        "candidateAuc": 0.8123,
        "championAuc": None,
        "championVersion": None,
        "delta": None,
        "ciLow": 0.79,
        "ciHigh": 0.83,
        "passed": True,
        "reason": "NoChampion",
    },
    "shadow": {"agreement": 0.97, "maxPsi": 0.05, "driftedFeatures": ["claim_amount"], "passed": True},
    "approval": {"decision": "Approved", "by": "ada", "at": "2026-01-02T03:20:00Z", "comment": "LGTM"},
    "conditions": [
        {
            "type": "Succeeded",
            "status": "True",
            "reason": "Succeeded",
            "message": "promoted version 4 to production",
            "lastTransitionTime": "2026-01-02T03:24:05Z",
            "observedGeneration": 1,
        },
        {
            "type": "CIPassed",
            "status": "True",
            "reason": "CIPassed",
            "message": "",
            "lastTransitionTime": "2026-01-02T03:08:00Z",
        },
        {"type": "Approved", "status": "True", "reason": "Approved", "message": "by ada"},
    ],
}


def test_pipelinerun_status_round_trips_and_drives_wait_and_columns(
    crds: ControlPlane, namespace: str
) -> None:
    create(crds, namespace, BASE_RUN)
    result = patch(crds, namespace, "cpr/run", {"status": RUN_STATUS}, "--subresource=status")
    assert result.returncode == 0, result.stderr

    status = get(crds, namespace, "cpr/run")["status"]
    # Nothing the operator writes is pruned (a merge patch drops the None values it was given).
    assert status == merge_patch({}, RUN_STATUS)

    for condition in ("Succeeded", "CIPassed", "Approved"):
        crds.kubectl("wait", "-n", namespace, f"--for=condition={condition}", "--timeout=20s", "cpr/run")

    table = crds.kubectl("get", "cpr", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "COMMIT", "STAGE", "SUCCEEDED", "REASON", "APPROVAL", "AUC", "AGE"]
    assert table[1].split()[:7] == [
        "run",
        "0123abcd",
        "promote-production",
        "True",
        "Succeeded",
        "Approved",  # status.approval.decision: the gate's outcome, not the cast ballot
        "0.8123",
    ]
    wide = crds.kubectl("get", "cpr", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert wide[-4:] == ["PHASE", "MODEL", "DRIFT", "VERSION"]


def test_kubectl_wait_ignores_conditions_of_an_older_generation(crds: ControlPlane, namespace: str) -> None:
    """The operator's contract: after a spec patch (continue, approve, cancel) `kubectl wait` only
    trusts conditions whose observedGeneration caught up with metadata.generation."""
    create(crds, namespace, BASE_RUN)
    assert patch(crds, namespace, "cpr/run", _spec(continueToCD=True)).returncode == 0  # generation 2
    for generation, met in ((1, False), (2, True)):
        condition = {
            "type": "Succeeded",
            "status": "True",
            "reason": "Succeeded",
            "observedGeneration": generation,
        }
        status = {"observedGeneration": generation, "conditions": [condition]}
        assert patch(crds, namespace, "cpr/run", {"status": status}, "--subresource=status").returncode == 0
        wait = crds.kubectl(
            "wait", "-n", namespace, "--for=condition=Succeeded", "--timeout=1s", "cpr/run", check=False
        )
        assert (wait.returncode == 0) is met, wait.stderr


@pytest.mark.parametrize(
    ("status", "field", "says"),
    [
        (
            {"stages": [{"name": "ci-tests", "state": "Exploded"}]},
            "status.stages[0].state",
            "Unsupported value",
        ),
        (
            {"conditions": [{"type": "Succeeded", "status": "Yes"}]},
            "status.conditions[0].status",
            "Unsupported value",
        ),
        ({"conditions": [{"type": "Succeeded"}]}, "status.conditions[0].status", "Required value"),
        (
            {"evaluation": {"candidateAuc": "high"}},
            "status.evaluation.candidateAuc",
            "must be of type number",
        ),
        ({"startedAt": "yesterday"}, "status.startedAt", "date-time"),
    ],
    ids=["stage-state", "condition-status", "condition-without-status", "auc-type", "timestamp"],
)
def test_malformed_status_is_rejected(
    crds: ControlPlane, namespace: str, status: dict[str, Any], field: str, says: str
) -> None:
    create(crds, namespace, BASE_RUN)
    assert_rejected_for(
        patch(crds, namespace, "cpr/run", {"status": status}, "--subresource=status"), field, says
    )


def test_short_names_and_category(crds: ControlPlane, namespace: str) -> None:
    create(crds, namespace, BASE_RUN)
    create(crds, namespace, BASE_DEPLOYMENT)
    listed = crds.kubectl("get", "claimops", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(listed) == ["modeldeployment.claimops.io/prod", "pipelinerun.claimops.io/run"]
    assert crds.kubectl("get", "mdep", "-n", namespace, "-o", "name").stdout.split() == [
        "modeldeployment.claimops.io/prod"
    ]
    table = crds.kubectl("get", "mdep", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "ROLE", "MODEL", "VERSION", "READY", "URL", "AGE"]


# -- ModelDeployments ---------------------------------------------------------------------------

DEPLOYMENT_CREATE_CASES = [
    Malformed("role-missing", _spec(role=None), "spec.role", "Required value"),
    Malformed("role-not-in-enum", _spec(role="canary"), "spec.role", "Unsupported value"),
    Malformed("model-missing", _spec(model=None), "spec.model", "Required value"),
    Malformed(
        "version-and-alias",  # CEL
        _spec(model={"alias": "champion"}),
        "spec.model",
        "exactly one of spec.model.version or spec.model.alias",
    ),
    Malformed(
        "neither-version-nor-alias",  # CEL
        _spec(model={"version": None}),
        "spec.model",
        "exactly one of spec.model.version or spec.model.alias",
    ),
    Malformed("version-not-digits", _spec(model={"version": "v3"}), "spec.model.version", "should match"),
    Malformed(
        "version-a-number", _spec(model={"version": 3}), "spec.model.version", "must be of type string"
    ),
    Malformed(
        "alias-not-in-enum",
        _spec(model={"version": None, "alias": "latest"}),
        "spec.model.alias",
        "Unsupported",
    ),
    Malformed("replicas-above-range", _spec(replicas=11), "spec.replicas", "less than or equal to 10"),
    Malformed(
        "ab-test-outside-production",  # CEL
        _spec(role="staging", abTest={"challengerVersion": "4", "trafficPercent": 10}),
        "spec.abTest",
        "only allowed when spec.role is production",
    ),
    Malformed(
        "ab-test-traffic-above-100",
        _spec(abTest={"challengerVersion": "4", "trafficPercent": 101}),
        "spec.abTest.trafficPercent",
        "less than or equal to 100",
    ),
    Malformed(
        "ab-test-challenger-is-champion",  # CEL
        _spec(abTest={"challengerVersion": "3", "trafficPercent": 10}),
        "spec.abTest.challengerVersion",
        "must differ",
    ),
    Malformed(
        "resources-bad-quantity",
        _spec(resources={"requests": {"cpu": "lots"}}),
        "spec.resources.requests.cpu",
        "should match",
    ),
    Malformed(
        "rollback-without-request-id",
        _spec(rollback={"toVersion": "2"}),
        "spec.rollback.requestId",
        "Required",
    ),
    Malformed("name-not-dns-1035", {"metadata": {"name": "1prod"}}, "metadata.name", "DNS-1035"),  # CEL
]


@pytest.mark.parametrize("case", DEPLOYMENT_CREATE_CASES, ids=[c.name for c in DEPLOYMENT_CREATE_CASES])
def test_malformed_modeldeployment_is_rejected(crds: ControlPlane, namespace: str, case: Malformed) -> None:
    body = manifest(BASE_DEPLOYMENT, case.patch)
    result = create(crds, namespace, body, check=False)
    assert_rejected_for(result, case.field, case.says)


def test_modeldeployment_role_is_immutable(crds: ControlPlane, namespace: str) -> None:
    create(crds, namespace, BASE_DEPLOYMENT)
    assert_rejected_for(patch(crds, namespace, "mdep/prod", _spec(role="staging")), "spec.role", "immutable")


def test_modeldeployment_rollback_scale_and_status(crds: ControlPlane, namespace: str) -> None:
    create(crds, namespace, BASE_DEPLOYMENT)
    # The documented rollback command, twice (each request is a new requestId).
    for request_id in ("1767323045", "1767323099"):
        body = _spec(rollback={"requestId": request_id, "toVersion": None, "reason": "AUC alert"})
        result = patch(crds, namespace, "mdep/prod", body)
        assert result.returncode == 0, result.stderr
    assert get(crds, namespace, "mdep/prod")["spec"]["rollback"] == {
        "requestId": "1767323099",
        "reason": "AUC alert",
    }
    # Switching from a pinned version to an alias in one merge patch.
    result = patch(crds, namespace, "mdep/prod", _spec(model={"version": None, "alias": "champion"}))
    assert result.returncode == 0, result.stderr

    crds.kubectl("scale", "-n", namespace, "mdep/prod", "--replicas=3")
    assert get(crds, namespace, "mdep/prod")["spec"]["replicas"] == 3
    too_many = crds.kubectl("scale", "-n", namespace, "mdep/prod", "--replicas=11", check=False)
    assert too_many.returncode != 0
    assert "spec.replicas" in too_many.stderr

    generation = get(crds, namespace, "mdep/prod")["metadata"]["generation"]
    status = {
        # kubectl wait ignores conditions while status.observedGeneration < metadata.generation.
        "observedGeneration": generation,
        "replicas": 3,
        "readyReplicas": 3,
        "selector": "app.kubernetes.io/instance=prod",
        "servingVersion": "2",
        "servingAlias": "champion",
        "url": "http://prod.claimops.svc:8080",
        "inferencePath": "onnx",
        "image": "claimops/model-server:dev",
        "history": [
            {
                "version": "2",
                "servedFrom": "2026-01-01T00:00:00Z",
                "reason": "Promoted",
                "pipelineRun": "run-a",
            },
            {
                "version": "3",
                "servedFrom": "2026-01-02T00:00:00Z",
                "servedUntil": "2026-01-03T00:00:00Z",
                "reason": "RolledBack",
                "pipelineRun": "run-b",
            },
        ],
        "rolledBackFrom": "3",
        "observedRollbackRequestId": "1767323099",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Serving", "message": "3/3 ready"},
            {"type": "Progressing", "status": "False", "reason": "RolloutComplete", "message": ""},
        ],
    }
    result = patch(crds, namespace, "mdep/prod", {"status": status}, "--subresource=status")
    assert result.returncode == 0, result.stderr
    assert get(crds, namespace, "mdep/prod")["status"] == status
    crds.kubectl("wait", "-n", namespace, "--for=condition=Ready", "--timeout=20s", "mdep/prod")
    row = crds.kubectl("get", "mdep", "-n", namespace, "--no-headers").stdout.split()
    assert row[:6] == ["prod", "production", "claim-settlement", "2", "True", "http://prod.claimops.svc:8080"]
