"""What the UI's buttons send: PipelineRun manifests and request validation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from claimops_stages.api_names import CREATED_BY_USER
from claimops_stages.contract import FailureMode
from claimops_ui.actions import RUN_NAME, RunRequest, build_run

NO_DEFAULTS = {m.value: False for m in FailureMode}


def test_fake_commit_gets_a_fresh_sha_a_message_and_the_user_as_author() -> None:
    body = build_run(RunRequest(), "alice", NO_DEFAULTS)
    commit = body["spec"]["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit["sha"])
    assert commit["message"]
    assert commit["author"] == "alice"
    assert body["metadata"]["annotations"][CREATED_BY_USER] == "alice"
    assert "failureInjection" not in body["spec"]
    assert "dataset" not in body["spec"]  # the CRD's defaults apply


def test_run_names_are_valid_unique_and_short() -> None:
    names = {build_run(RunRequest(), "alice", NO_DEFAULTS)["metadata"]["name"] for _ in range(50)}
    assert len(names) == 50
    assert all(re.fullmatch(RUN_NAME, n) and len(n) <= 40 for n in names)


FAILURES = [
    ("defaults-apply", None, {"SchemaValidation": True}, ["SchemaValidation"]),
    (
        "explicit-overrides-defaults",
        [FailureMode.TRAINING_ERROR],
        {"SchemaValidation": True},
        ["TrainingError"],
    ),
    ("explicit-empty-means-none", [], {"SchemaValidation": True}, None),
    ("no-defaults", None, {}, None),
]


@pytest.mark.parametrize(
    ("requested", "defaults", "expected"), [c[1:] for c in FAILURES], ids=[c[0] for c in FAILURES]
)
def test_failure_injection(
    requested: list[FailureMode] | None, defaults: dict[str, bool], expected: list[str] | None
) -> None:
    body = build_run(RunRequest(failureInjection=requested), "alice", {**NO_DEFAULTS, **defaults})
    assert body["spec"].get("failureInjection") == expected


def test_small_runs_set_dataset_and_training() -> None:
    body = build_run(
        RunRequest(rows=5000, nEstimators=50, drift="severe", autoContinueToCD=True), "bob", NO_DEFAULTS
    )
    assert body["spec"]["dataset"] == {"rows": 5000, "drift": "severe"}
    assert body["spec"]["training"] == {"nEstimators": 50}
    assert body["spec"]["autoContinueToCD"] is True


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("sha-not-hex", {"sha": "xyz1234"}),
    ("sha-too-short", {"sha": "abc12"}),
    ("rows-too-few", {"rows": 10}),
    ("unknown-drift", {"drift": "extreme"}),
    ("unknown-failure", {"failureInjection": ["Meteor"]}),
    ("trees-too-many", {"nEstimators": 5000}),
]


@pytest.mark.parametrize("fields", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_requests_are_refused_before_reaching_the_api_server(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RunRequest(**fields)
