"""The release record's pure part: the Statement from a release context, its bytes, digest."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from claimops_stages import release
from claimops_stages.release import ReleasedModel

IMAGE_DIGEST = "sha256:" + "ab" * 32
MODEL = ReleasedModel(
    name="claim-settlement",
    version="7",
    mlmodel_sha256="cd" * 32,
    source_run_id="run-full-train",
    tracking_uri="http://claimops:secret@mlflow.claimops:5000",
)
PROMOTED_AT = "2026-03-02T10:00:00+00:00"


def full_context() -> dict[str, Any]:
    return {
        "pipelineRun": {
            "namespace": "ml",
            "name": "cpr-7",
            "uid": "0b7c-uid",
            "createdAt": "2026-03-01T09:00:00Z",
        },
        "spec": {
            "commit": {"sha": "a1b2c3d", "message": "More trees", "author": "alice", "branch": "main"},
            "dataset": {"rows": 20000, "seed": 42, "window": "2026-01-01/2026-03-31", "drift": "none"},
            "training": {"nEstimators": 200, "maxDepth": 12, "quickSampleFraction": 0.2},
            "submitter": {"username": "alice", "groups": ["ml-engineers"]},
            "decisions": [{"decision": "Approved", "user": "bob", "groups": ["approvers"], "comment": "ok"}],
        },
        "status": {
            "evaluation": {
                "candidateAuc": 0.91,
                "championAuc": 0.9,
                "championVersion": "6",
                "delta": 0.01,
                "ciLow": 0.002,
                "ciHigh": 0.018,
                "passed": True,
                "reason": "Passed",
            },
            "shadow": {"agreement": 0.97, "maxPsi": 0.05, "driftedFeatures": [], "passed": True},
            "mlflow": {
                "experimentId": "1",
                "runIds": {"full-train": "run-full-train", "evaluate-vs-champion": "run-eval"},
                "modelName": "claim-settlement",
                "modelVersion": "7",
            },
            "approval": {
                "decisions": [
                    {
                        "decision": "Approved",
                        "user": "bob",
                        "groups": ["approvers"],
                        "comment": "ok",
                        "at": "2026-03-01T12:00:00Z",
                    }
                ]
            },
        },
        "trainedBy": {
            "image": "ghcr.io/claimops/stages:1.4",
            "imageID": f"docker-pullable://ghcr.io/claimops/stages@{IMAGE_DIGEST}",
        },
        "promoter": "carol",
    }


def statement(context: dict[str, Any]) -> dict[str, Any]:
    return release.build_statement(context, MODEL, "carol", PROMOTED_AT)


def test_statement_is_in_toto_v1_about_the_model_version() -> None:
    s = statement(full_context())
    assert s["_type"] == "https://in-toto.io/Statement/v1"
    assert s["predicateType"] == "https://claimops.io/release/v1"
    assert s["subject"] == [{"name": "models:/claim-settlement/7", "digest": {"sha256": "cd" * 32}}]


def test_every_predicate_field_comes_from_a_full_context() -> None:
    p = statement(full_context())["predicate"]
    assert p["commit"] == {"sha": "a1b2c3d", "message": "More trees", "author": "alice", "branch": "main"}
    assert p["submitter"] == {"username": "alice", "groups": ["ml-engineers"]}
    assert p["dataset"] == {"rows": 20000, "seed": 42, "window": "2026-01-01/2026-03-31", "drift": "none"}
    assert p["training"] == {"nEstimators": 200, "maxDepth": 12, "quickSampleFraction": 0.2}
    assert p["trainedBy"] == {
        "image": "ghcr.io/claimops/stages:1.4",
        "imageID": f"docker-pullable://ghcr.io/claimops/stages@{IMAGE_DIGEST}",
        "imageDigest": IMAGE_DIGEST,
    }
    assert p["mlflow"] == {
        "trackingUri": "http://mlflow.claimops:5000",  # no credentials in the record
        "experimentId": "1",
        "runIds": {"full-train": "run-full-train", "evaluate-vs-champion": "run-eval"},
        "modelName": "claim-settlement",
        "modelVersion": "7",
        "sourceRunId": "run-full-train",
    }
    assert p["evaluation"] == {
        "candidateAuc": 0.91,
        "championAuc": 0.9,
        "championVersion": "6",
        "delta": 0.01,
        "ciLow": 0.002,
        "ciHigh": 0.018,
        "passed": True,
    }
    assert p["shadow"] == {"agreement": 0.97, "maxPsi": 0.05, "driftedFeatures": [], "passed": True}
    assert p["approvals"] == [
        {
            "decision": "Approved",
            "user": "bob",
            "groups": ["approvers"],
            "comment": "ok",
            "at": "2026-03-01T12:00:00Z",
        }
    ]
    assert p["promoter"] == "carol"
    assert p["pipelineRun"] == {"namespace": "ml", "name": "cpr-7", "uid": "0b7c-uid"}
    assert p["times"] == {
        "submittedAt": "2026-03-01T09:00:00Z",
        "approvedAt": "2026-03-01T12:00:00Z",
        "promotedAt": PROMOTED_AT,
    }


def test_no_context_gives_nulls_not_errors() -> None:
    p = statement({})["predicate"]
    assert p["commit"] == {"sha": None, "message": None, "author": None}
    assert p["submitter"] == {"username": None, "groups": []}
    assert p["dataset"] == {"rows": None, "seed": None, "window": None, "drift": None}
    assert p["training"] == {}
    assert p["trainedBy"] == {"image": None, "imageID": None, "imageDigest": None}
    assert p["mlflow"]["experimentId"] is None
    assert p["mlflow"]["runIds"] == {}
    assert (p["mlflow"]["modelName"], p["mlflow"]["modelVersion"]) == ("claim-settlement", "7")
    assert set(p["evaluation"].values()) == {None}
    assert set(p["shadow"].values()) == {None}
    assert p["approvals"] == []
    assert p["pipelineRun"] == {"namespace": None, "name": None, "uid": None}
    assert p["times"] == {"submittedAt": None, "approvedAt": None, "promotedAt": PROMOTED_AT}
    assert p["promoter"] == "carol"


@pytest.mark.parametrize(
    "path",
    [
        ("pipelineRun",),
        ("spec",),
        ("status",),
        ("trainedBy",),
        ("spec", "commit"),
        ("spec", "submitter"),
        ("status", "evaluation"),
        ("status", "approval"),
        ("pipelineRun", "createdAt"),
    ],
    ids=lambda p: ".".join(p),
)
def test_any_missing_key_still_builds_the_full_shape(path: tuple[str, ...]) -> None:
    context = full_context()
    parent = context
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    full = statement(full_context())["predicate"]
    p = statement(context)["predicate"]
    assert set(p) == set(full)
    for key in ("submitter", "trainedBy", "mlflow", "evaluation", "shadow", "pipelineRun", "times"):
        assert set(p[key]) == set(full[key]), key
    # commit and dataset are copied as given, with their required keys always there.
    assert {"sha", "message", "author"} <= set(p["commit"])
    assert {"rows", "seed", "window", "drift"} <= set(p["dataset"])


def test_wrongly_typed_values_count_as_missing() -> None:
    p = statement({"spec": "nope", "status": {"evaluation": [1]}, "trainedBy": {"imageID": 3}})["predicate"]
    assert p["commit"]["sha"] is None
    assert p["evaluation"]["candidateAuc"] is None
    assert p["trainedBy"]["imageDigest"] is None


def test_approvals_fall_back_to_the_spec_and_to_the_single_decision_of_older_runs() -> None:
    context = full_context()
    del context["status"]["approval"]
    p = statement(context)["predicate"]
    assert p["approvals"] == [
        {"decision": "Approved", "user": "bob", "groups": ["approvers"], "comment": "ok", "at": None}
    ]
    older = {"status": {"approval": {"decision": "Approved", "by": "dan", "at": "T1", "comment": "fine"}}}
    p = statement(older)["predicate"]
    assert p["approvals"] == [
        {"decision": "Approved", "user": "dan", "groups": [], "comment": "fine", "at": "T1"}
    ]
    assert p["times"]["approvedAt"] == "T1"


def test_non_finite_numbers_become_null_so_the_record_stays_json() -> None:
    context = full_context()
    context["status"]["evaluation"]["championAuc"] = float("nan")
    data = release.canonical_bytes(statement(context))
    assert json.loads(data)["predicate"]["evaluation"]["championAuc"] is None


@pytest.mark.parametrize(
    ("image_id", "expected"),
    [
        (f"docker-pullable://repo/stages@{IMAGE_DIGEST}", IMAGE_DIGEST),
        (f"ghcr.io/claimops/stages@{IMAGE_DIGEST}", IMAGE_DIGEST),
        (IMAGE_DIGEST, IMAGE_DIGEST),
        ("docker://sha256:short", None),
        ("", None),
        (None, None),
    ],
)
def test_image_digest_from_the_pod_image_id(image_id: str | None, expected: str | None) -> None:
    assert release.image_digest(image_id) == expected


def test_canonical_bytes_and_digest() -> None:
    s = statement(full_context())
    data = release.canonical_bytes(s)
    assert data == json.dumps(s, sort_keys=True, separators=(",", ":")).encode()
    assert release.digest(data) == "sha256:" + hashlib.sha256(data).hexdigest()


def test_digest_is_stable() -> None:
    first = release.digest(release.canonical_bytes(statement(full_context())))
    # Key order of the context does not matter: the bytes are canonical.
    reordered = dict(reversed(list(full_context().items())))
    assert release.digest(release.canonical_bytes(statement(reordered))) == first
    assert release.digest(release.canonical_bytes(statement(full_context()))) == first


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    return [path]


def test_digest_changes_when_any_field_changes() -> None:
    base = statement(full_context())
    before = release.digest(release.canonical_bytes(base))
    leaves = _leaves(base)
    assert len(leaves) > 40
    for path in leaves:
        changed = copy.deepcopy(base)
        parent = changed
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = "changed" if parent[path[-1]] != "changed" else "other"
        assert release.digest(release.canonical_bytes(changed)) != before, path


def test_verify_accepts_the_record_and_fails_on_a_tampered_byte() -> None:
    data = release.canonical_bytes(statement(full_context()))
    tag = release.digest(data)
    assert release.verify(data, tag)
    for index in (0, len(data) // 2, len(data) - 1):
        tampered = bytearray(data)
        tampered[index] ^= 0x01
        assert not release.verify(bytes(tampered), tag)
    assert not release.verify(data, "sha256:" + "0" * 64)


def test_artifact_location() -> None:
    assert release.artifact_path("7") == "release/release-v7.intoto.json"
    assert release.artifact_uri("abc", "7") == "runs:/abc/release/release-v7.intoto.json"


def test_parse_context() -> None:
    assert release.parse_context(None) == {}
    assert release.parse_context("") == {}
    assert release.parse_context(json.dumps(full_context())) == full_context()
    with pytest.raises(ValueError, match="not JSON"):
        release.parse_context("{nope")
    with pytest.raises(ValueError, match="not an object"):
        release.parse_context("[1]")
