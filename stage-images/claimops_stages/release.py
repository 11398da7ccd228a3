"""The release record: an in-toto Statement v1 written when a model version is promoted.

Pure: builds the Statement from what the operator knows (the release context) and what the
promote stage read from MLflow, renders it as canonical bytes and digests them. The MLflow
calls (reading the MLmodel file, storing the record, tagging the version) are in
``stages.promote_production``.

The record is stored as an artifact of the version's source run (the run that logged the
model) at ``release/release-v<version>.intoto.json``; the version's tags
``claimops.release.digest`` (``sha256:<hex>`` of the stored bytes) and
``claimops.release.uri`` (``runs:/<run_id>/release/release-v<version>.intoto.json``) point
at it, and :func:`verify` checks stored bytes against the digest tag.

Subject: ``models:/<model>/<version>`` with ``digest.sha256`` = sha256 of the bytes of the
model's ``MLmodel`` file, as downloaded from ``models:/<model>/<version>/MLmodel``. That file
is written once when the model is logged and names the model's run, UUID, flavors and
signature, so the same version always gives the same digest and anyone can recompute it
with one download (a directory listing would depend on the artifact store's ordering).

The release context (``--release-context``) is a JSON object the operator builds::

    {"pipelineRun": {"namespace": str, "name": str, "uid": str, "createdAt": str},
     "spec": {"commit": {"sha": str, "message": str, "author": str, ...},
              "dataset": {"rows": int, "seed": int, "window": str, "drift": str, ...},
              "training": {...},
              "submitter": {"username": str, "groups": [str]},
              "decisions": [{"decision": str, "user": str, "groups": [str], "comment": str}]},
     "status": {"evaluation": {"candidateAuc", "championAuc", "championVersion", "delta",
                               "ciLow", "ciHigh", "passed"},
                "shadow": {"agreement", "maxPsi", "driftedFeatures", "passed"},
                "mlflow": {"experimentId": str, "runIds": {stage: run_id},
                           "modelName": str, "modelVersion": str},
                "approval": {"decisions": [{"decision", "user", "groups", "comment", "at"}]}},
     "trainedBy": {"image": str, "imageID": str},
     "promoter": str}

Any key may be missing (runs from before the record existed): the predicate then carries
null (or an empty list/object) for it; a value of the wrong JSON type counts as missing.
Approvals come from ``status.approval.decisions`` (they carry ``at``), else from
``spec.decisions`` (no ``at``), else from the single ``status.approval`` {decision, by, at,
comment} older runs have. ``commit``, ``dataset`` and ``training`` are copied as given (with
``sha``/``message``/``author`` and ``rows``/``seed``/``window``/``drift`` always present); the
other objects carry exactly the keys listed above, so the predicate's shape stays fixed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from claimops_stages.api_names import RELEASE_PREDICATE_TYPE

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = RELEASE_PREDICATE_TYPE
#: Model-version tags that point at the record.
TAG_DIGEST = "claimops.release.digest"
TAG_URI = "claimops.release.uri"
ARTIFACT_DIR = "release"
APPROVED = "Approved"

_COMMIT_KEYS = ("sha", "message", "author")
_DATASET_KEYS = ("rows", "seed", "window", "drift")
_EVALUATION_KEYS = ("candidateAuc", "championAuc", "championVersion", "delta", "ciLow", "ciHigh", "passed")
_SHADOW_KEYS = ("agreement", "maxPsi", "driftedFeatures", "passed")
_PIPELINE_RUN_KEYS = ("namespace", "name", "uid")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

JSON = Any


@dataclass(frozen=True)
class ReleasedModel:
    """What the promote stage read from MLflow about the version it promotes."""

    name: str
    version: str
    #: sha256 (hex) of the version's MLmodel file bytes.
    mlmodel_sha256: str
    #: The run that logged the model, where the record is stored.
    source_run_id: str
    tracking_uri: str | None = None

    @property
    def subject_name(self) -> str:
        return f"models:/{self.name}/{self.version}"


def artifact_path(version: str) -> str:
    """The record's path inside the source run's artifacts."""
    return f"{ARTIFACT_DIR}/release-v{version}.intoto.json"


def artifact_uri(run_id: str, version: str) -> str:
    return f"runs:/{run_id}/{artifact_path(version)}"


def parse_context(text: str | None) -> dict[str, JSON]:
    """The release context from its CLI value; {} when absent. ValueError when the value is
    not a JSON object (an operator bug, unlike a missing key)."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--release-context is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"--release-context is a JSON {type(data).__name__}, not an object")
    return data


def _obj(value: JSON) -> dict[str, JSON]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: JSON) -> list[JSON]:
    return list(value) if isinstance(value, list) else []


def _str(value: JSON) -> str | None:
    return value if isinstance(value, str) else None


def _finite(value: JSON) -> JSON:
    """NaN and infinity are not JSON: record them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _pick(source: Mapping[str, JSON], keys: tuple[str, ...]) -> dict[str, JSON]:
    return {k: source.get(k) for k in keys}


def _given(source: Mapping[str, JSON], keys: tuple[str, ...]) -> dict[str, JSON]:
    """As given, with `keys` always present."""
    return {**dict.fromkeys(keys), **source}


def image_digest(image_id: str | None) -> str | None:
    """`sha256:<hex>` from a pod's containerStatuses[].imageID, which the runtime spells
    `docker-pullable://repo@sha256:…`, `repo@sha256:…` or `sha256:…`; None otherwise."""
    if not image_id:
        return None
    digest = image_id.rsplit("@", 1)[-1].removeprefix("docker-pullable://")
    return digest if _DIGEST.fullmatch(digest) else None


def public_uri(uri: str | None) -> str | None:
    """The tracking URI without user:password (the record is readable by anyone who can read
    the run)."""
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _approvals(spec: Mapping[str, JSON], status: Mapping[str, JSON]) -> list[dict[str, JSON]]:
    approval = _obj(status.get("approval"))
    decisions = _list(approval.get("decisions")) or _list(spec.get("decisions"))
    if not decisions and approval.get("decision") not in (None, "Pending"):
        # Older runs keep one decision: {decision, by, at, comment}.
        decisions = [approval]
    records = []
    for entry in decisions:
        d = _obj(entry)
        records.append(
            {
                "decision": d.get("decision"),
                "user": d.get("user", d.get("by")),
                "groups": _list(d.get("groups")),
                "comment": d.get("comment"),
                "at": d.get("at"),
            }
        )
    return records


def build_statement(
    context: Mapping[str, JSON], model: ReleasedModel, promoter: str, promoted_at: str
) -> dict[str, JSON]:
    """The in-toto Statement of one promotion."""
    spec, status = _obj(context.get("spec")), _obj(context.get("status"))
    run = _obj(context.get("pipelineRun"))
    submitter = _obj(spec.get("submitter"))
    mlflow = _obj(status.get("mlflow"))
    trained_by = _obj(context.get("trainedBy"))
    approvals = _approvals(spec, status)
    approved = [a["at"] for a in approvals if a["decision"] == APPROVED]
    predicate = {
        "commit": _given(_obj(spec.get("commit")), _COMMIT_KEYS),
        "submitter": {"username": submitter.get("username"), "groups": _list(submitter.get("groups"))},
        "dataset": _given(_obj(spec.get("dataset")), _DATASET_KEYS),
        "training": _obj(spec.get("training")),
        "trainedBy": {
            "image": _str(trained_by.get("image")),
            "imageID": _str(trained_by.get("imageID")),
            "imageDigest": image_digest(_str(trained_by.get("imageID"))),
        },
        "mlflow": {
            "trackingUri": public_uri(model.tracking_uri),
            "experimentId": mlflow.get("experimentId"),
            "runIds": _obj(mlflow.get("runIds")),
            # The version actually promoted, whatever the run's status says.
            "modelName": model.name,
            "modelVersion": model.version,
            "sourceRunId": model.source_run_id,
        },
        "evaluation": _pick(_obj(status.get("evaluation")), _EVALUATION_KEYS),
        "shadow": _pick(_obj(status.get("shadow")), _SHADOW_KEYS),
        "approvals": approvals,
        "promoter": promoter,
        "pipelineRun": _pick(run, _PIPELINE_RUN_KEYS),
        "times": {
            "submittedAt": run.get("createdAt"),
            "approvedAt": approved[-1] if approved else None,
            "promotedAt": promoted_at,
        },
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model.subject_name, "digest": {"sha256": model.mlmodel_sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": _finite(predicate),
    }


def canonical_bytes(statement: Mapping[str, JSON]) -> bytes:
    """The exact bytes stored (and digested): sorted keys, no whitespace, ASCII."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode("utf-8")


def digest(data: bytes) -> str:
    """The value of the digest tag: `sha256:<hex>` of the stored bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify(data: bytes, tag: str) -> bool:
    """Whether stored record bytes match a version's `claimops.release.digest` tag."""
    return hmac.compare_digest(digest(data), tag)
