"""promote-production's release record on a real `mlflow server`: stored on the version's
source run, its digest the version's tag, every field from the release context; and when the
record cannot be stored, the champion does not move."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.artifacts
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from claimops_stages import registry, release
from claimops_stages.contract import Reason, StageInputs
from claimops_stages.stages import StageContext, StageFailure, promote_production
from tests.harness.mlflow_server import MlflowServer
from tests.harness.model_server import register_model
from tests.service.conftest import StageRun, StageRunner

pytestmark = pytest.mark.service

MODEL = "release-record-test"
IMAGE_DIGEST = "sha256:" + "5e" * 32
CONTEXT: dict[str, Any] = {
    "pipelineRun": {
        "namespace": "ml",
        "name": "cpr-rel",
        "uid": "uid-1",
        "createdAt": "2026-03-01T09:00:00Z",
    },
    "spec": {
        "commit": {"sha": "a1b2c3d", "message": "Release record", "author": "alice"},
        "dataset": {"rows": 2000, "seed": 42, "window": "2026-01-01/2026-03-31", "drift": "none"},
        "training": {"nEstimators": 10, "maxDepth": 12},
        "submitter": {"username": "alice", "groups": ["ml-engineers"]},
        "decisions": [{"decision": "Approved", "user": "bob", "groups": ["approvers"], "comment": "ok"}],
    },
    "status": {
        "evaluation": {
            "candidateAuc": 0.9,
            "championAuc": None,
            "championVersion": None,
            "delta": None,
            "ciLow": None,
            "ciHigh": None,
            "passed": True,
        },
        "shadow": {"agreement": 0.98, "maxPsi": 0.04, "driftedFeatures": [], "passed": True},
        "mlflow": {
            "experimentId": "9",
            "runIds": {"full-train": "r-ft"},
            "modelName": MODEL,
            "modelVersion": "1",
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
        "image": "claimops/stages:dev",
        "imageID": f"docker-pullable://claimops/stages@{IMAGE_DIGEST}",
    },
    "promoter": "carol",
}


@dataclass
class Promotion:
    version: str
    run: StageRun


@pytest.fixture(scope="module")
def runner(sqlite_mlflow: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> StageRunner:
    return StageRunner(sqlite_mlflow.url, tmp_path_factory.mktemp("release-runner"))


def _evaluated_version(tracking_uri: str) -> str:
    version, _ = register_model(tracking_uri, MODEL, rows=2000, n_estimators=10)
    MlflowClient(tracking_uri).set_model_version_tag(MODEL, version, registry.TAG_EVALUATION_PASSED, "true")
    return version


@pytest.fixture(scope="module")
def promotion(runner: StageRunner) -> Promotion:
    version = _evaluated_version(runner.tracking_uri)
    inputs = StageInputs(
        run="cpr-rel",
        model_name=MODEL,
        candidate_version=version,
        requested_by="operator",
        release_context=json.dumps(CONTEXT),
    )
    return Promotion(version, runner("promote-production", inputs))


def _download(uri: str, tracking_uri: str, dst: Path) -> bytes:
    return Path(
        mlflow.artifacts.download_artifacts(uri, dst_path=str(dst), tracking_uri=tracking_uri)
    ).read_bytes()


def test_record_is_stored_on_the_source_run_and_its_digest_is_the_tag(
    promotion: Promotion, runner: StageRunner, tmp_path: Path
) -> None:
    assert promotion.run.exit_code == 0, promotion.run.result.message
    client = runner.client()
    version = client.get_model_version(MODEL, promotion.version)
    uri = f"runs:/{version.run_id}/release/release-v{promotion.version}.intoto.json"
    assert version.tags[release.TAG_URI] == uri
    assert promotion.run.result.outputs["release_uri"] == uri
    assert promotion.run.result.outputs["release_digest"] == version.tags[release.TAG_DIGEST]
    data = _download(uri, runner.tracking_uri, tmp_path / "record")
    assert "sha256:" + hashlib.sha256(data).hexdigest() == version.tags[release.TAG_DIGEST]
    assert release.verify(data, version.tags[release.TAG_DIGEST])
    assert runner.aliases(MODEL)["champion"] == promotion.version


def test_record_carries_every_field(promotion: Promotion, runner: StageRunner, tmp_path: Path) -> None:
    client = runner.client()
    version = client.get_model_version(MODEL, promotion.version)
    statement = json.loads(_download(version.tags[release.TAG_URI], runner.tracking_uri, tmp_path / "r"))
    mlmodel = _download(f"models:/{MODEL}/{promotion.version}/MLmodel", runner.tracking_uri, tmp_path / "m")
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://claimops.io/release/v1"
    assert statement["subject"] == [
        {
            "name": f"models:/{MODEL}/{promotion.version}",
            "digest": {"sha256": hashlib.sha256(mlmodel).hexdigest()},
        }
    ]
    p = statement["predicate"]
    spec, status = CONTEXT["spec"], CONTEXT["status"]
    assert p["commit"] == spec["commit"]
    assert p["submitter"] == spec["submitter"]
    assert p["dataset"] == spec["dataset"]
    assert p["training"] == spec["training"]
    assert p["trainedBy"] == {**CONTEXT["trainedBy"], "imageDigest": IMAGE_DIGEST}
    assert p["mlflow"] == {
        "trackingUri": runner.tracking_uri,
        "experimentId": "9",
        "runIds": {"full-train": "r-ft"},
        "modelName": MODEL,
        "modelVersion": promotion.version,
        "sourceRunId": version.run_id,
    }
    assert p["evaluation"] == status["evaluation"]
    assert p["shadow"] == status["shadow"]
    assert p["approvals"] == status["approval"]["decisions"]
    assert p["promoter"] == "carol"
    assert p["pipelineRun"] == {"namespace": "ml", "name": "cpr-rel", "uid": "uid-1"}
    # The registry's promotion tags and the record tell the same story.
    assert p["times"] == {
        "submittedAt": "2026-03-01T09:00:00Z",
        "approvedAt": "2026-03-01T12:00:00Z",
        "promotedAt": version.tags[registry.TAG_PROMOTED_AT],
    }
    assert version.tags[registry.TAG_PROMOTED_BY] == "carol"


class _ArtifactStoreDown(MlflowClient):
    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        raise MlflowException("artifact store refused the write")


def test_champion_stays_when_the_record_cannot_be_stored(
    promotion: Promotion, runner: StageRunner, tmp_path: Path
) -> None:
    champion = promotion.version
    candidate = _evaluated_version(runner.tracking_uri)
    ctx = StageContext(
        "promote-production",
        _ArtifactStoreDown(runner.tracking_uri),
        "0",
        "no-run",
        tmp_path,
        logging.getLogger("test-release-record"),
    )
    inputs = StageInputs(run="cpr-rel-2", model_name=MODEL, candidate_version=candidate)
    with pytest.raises(StageFailure) as failure:
        promote_production(inputs, ctx)
    assert failure.value.reason is Reason.RELEASE_RECORD_FAILED
    assert "artifact store refused the write" in failure.value.message
    assert runner.aliases(MODEL)["champion"] == champion
    tags = runner.client().get_model_version(MODEL, candidate).tags
    assert release.TAG_DIGEST not in tags
    assert registry.TAG_PROMOTED_AT not in tags
