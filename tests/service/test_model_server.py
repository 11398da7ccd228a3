"""Real model-server processes (`python -m claimops_stages.serving`) against a real
`mlflow server`: two registered versions served side by side, one of them with an A/B
challenger, bad bodies refused with details, readiness and fallback visible from outside."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
import pytest

from claimops_stages.claims import FEATURES, generate_claims
from claimops_stages.registry import CHAMPION
from claimops_stages.serving.schema import MAX_BATCH_CLAIMS
from claimops_stages.training import model_frame
from tests.harness.mlflow_server import MlflowServer
from tests.harness.model_server import ModelServer, register_model

pytestmark = pytest.mark.service

MODEL = "claim-settlement-serving"
AB_PERCENT = 25


@dataclass
class Registered:
    mlflow: MlflowServer
    champion: str
    candidate: str
    workdir: Path


@pytest.fixture(scope="module")
def registered(sqlite_mlflow: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Registered:
    # Small forests (5k claims, 50 trees): real models, a few seconds each.
    champion, _ = register_model(sqlite_mlflow.url, MODEL, rows=5000, seed=1, alias=CHAMPION)
    candidate, _ = register_model(sqlite_mlflow.url, MODEL, rows=5000, seed=2)
    return Registered(sqlite_mlflow, champion, candidate, tmp_path_factory.mktemp("model-servers"))


@pytest.fixture(scope="module")
def champion_server(registered: Registered) -> Iterator[ModelServer]:
    """Serves the champion by alias."""
    server = ModelServer(registered.mlflow.url, MODEL, registered.workdir, alias=CHAMPION)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ab_server(registered: Registered) -> Iterator[ModelServer]:
    """Serves the candidate by version, with the champion as A/B challenger."""
    args = ["--ab-challenger-version", registered.champion, "--ab-traffic-percent", str(AB_PERCENT)]
    server = ModelServer(
        registered.mlflow.url, MODEL, registered.workdir, version=registered.candidate, args=args
    )
    try:
        yield server.start()
    finally:
        server.stop()


def sample_claims(n: int, seed: int = 77) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = model_frame(generate_claims(n, seed=seed)).to_dict("records")
    return [{**r, "patient_age": int(r["patient_age"])} for r in records]


def registry_probabilities(
    mlflow_server: MlflowServer, version: str, claims: list[dict[str, Any]], model: str = MODEL
) -> np.ndarray:
    mlflow.set_tracking_uri(mlflow_server.url)
    pipeline = mlflow.sklearn.load_model(f"models:/{model}/{version}")
    import pandas as pd

    return np.asarray(pipeline.predict_proba(pd.DataFrame(claims)[list(FEATURES)]))[:, 1]


def metric(text: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def test_two_servers_serve_their_versions(
    registered: Registered, champion_server: ModelServer, ab_server: ModelServer
) -> None:
    status, ready = champion_server.ready()
    assert status == 200
    assert (ready["model_name"], ready["model_version"], ready["model_alias"]) == (
        MODEL,
        registered.champion,
        CHAMPION,
    )
    assert (ready["inference"], ready["fallback_reason"], ready["ab"]) == ("onnx", None, None)
    status, ready = ab_server.ready()
    assert (status, ready["model_version"], ready["ab"]["challenger_version"]) == (
        200,
        registered.candidate,
        registered.champion,
    )
    assert ready["ab"]["traffic_percent"] == AB_PERCENT


def test_predictions_match_the_registered_pipelines(
    registered: Registered, champion_server: ModelServer
) -> None:
    claims = sample_claims(200)
    status, response = champion_server.predict({"claims": claims})
    assert status == 200
    assert response["model_version"] == registered.champion
    served = np.array([p["probability_approved"] for p in response["predictions"]])
    expected = registry_probabilities(registered.mlflow, registered.champion, claims)
    assert np.max(np.abs(served - expected)) <= 1e-5
    assert [p["outcome"] for p in response["predictions"]] == [
        "Approved" if p > 0.5 else "Denied" for p in expected
    ]
    # One claim at a time gives the same answers as the batch.
    for claim, batch_prediction in list(zip(claims, response["predictions"], strict=True))[:10]:
        status, single = champion_server.predict(claim)
        assert status == 200
        assert single["predictions"][0]["probability_approved"] == pytest.approx(
            batch_prediction["probability_approved"], abs=1e-6
        )


def test_the_two_versions_answer_differently(champion_server: ModelServer, ab_server: ModelServer) -> None:
    claims = sample_claims(50, seed=5)
    _, first = champion_server.predict({"claims": claims})
    # The A/B server's first request goes to its primary (the candidate).
    _, second = ab_server.predict({"claims": claims})
    assert second["arm"] == "primary"
    assert first["model_version"] != second["model_version"]
    assert [p["probability_approved"] for p in first["predictions"]] != [
        p["probability_approved"] for p in second["predictions"]
    ]


def test_ab_share_and_per_arm_metrics(registered: Registered, ab_server: ModelServer) -> None:
    before = ab_server.metrics()
    claim = sample_claims(1, seed=9)[0]
    responses = [ab_server.predict(claim)[1] for _ in range(100)]
    arms = [(r["arm"], r["model_version"]) for r in responses]
    assert arms.count(("challenger", registered.champion)) == AB_PERCENT
    assert arms.count(("primary", registered.candidate)) == 100 - AB_PERCENT
    after = ab_server.metrics()
    for arm, count in (("challenger", AB_PERCENT), ("primary", 100 - AB_PERCENT)):
        for series in (
            f'claimops_model_server_requests_total{{arm="{arm}",code="200",protocol="predict"}}',
            f'claimops_model_server_request_duration_seconds_count{{arm="{arm}"}}',
            f'claimops_model_server_predictions_total{{arm="{arm}"',
        ):
            assert metric(after, series) - metric(before, series) == count, series
    assert f'model_version="{registered.champion}"' in after
    assert metric(after, "claimops_model_server_ab_traffic_percent") == AB_PERCENT


CLAIM = sample_claims(1, seed=3)[0]
BAD_BODIES = [
    pytest.param(None, b"{oops", 422, "json_invalid", ["body"], id="malformed-json"),
    pytest.param(
        {k: v for k, v in CLAIM.items() if k != "cpt_bucket"},
        None,
        422,
        "missing",
        ["body", "cpt_bucket"],
        id="missing-field",
    ),
    pytest.param(
        {**CLAIM, "billed_amount": "lots"},
        None,
        422,
        "float_type",
        ["body", "billed_amount"],
        id="wrong-type",
    ),
    pytest.param(
        {**CLAIM, "patient_age": 33.3},
        None,
        422,
        "int_from_float",
        ["body", "patient_age"],
        id="fractional-age",
    ),
    pytest.param(
        {**CLAIM, "cpt_bucket": "Dentistry"}, None, 422, "enum", ["body", "cpt_bucket"], id="unknown-category"
    ),
    pytest.param(
        {**CLAIM, "billed_amount": -5.0},
        None,
        422,
        "greater_than_equal",
        ["body", "billed_amount"],
        id="negative-amount",
    ),
    pytest.param(
        {**CLAIM, "allowed_amount": CLAIM["billed_amount"] + 1},
        None,
        422,
        "allowed_exceeds_billed",
        ["body", "allowed_amount"],
        id="allowed-over-billed",
    ),
    pytest.param(
        {**CLAIM, "patient_age": 140},
        None,
        422,
        "less_than_equal",
        ["body", "patient_age"],
        id="age-out-of-range",
    ),
    pytest.param({**CLAIM, "ssn": "123"}, None, 422, "extra_forbidden", ["body", "ssn"], id="unknown-field"),
    pytest.param({"claims": []}, None, 422, "too_short", ["body", "claims"], id="empty-batch"),
    pytest.param(
        {"claims": [CLAIM] * (MAX_BATCH_CLAIMS + 1)},
        None,
        413,
        "too_long",
        ["body", "claims"],
        id="oversized-batch",
    ),
    pytest.param(
        {"claims": [CLAIM, "x"]}, None, 422, "model_type", ["body", "claims", 1], id="batch-item-not-object"
    ),
    pytest.param(
        None,
        b'{"claims": [{"billed_amount": NaN}]}',
        422,
        "missing",
        ["body", "claims", 0, "cpt_bucket"],
        id="nan",
    ),
    pytest.param(None, b" " * 1_000_001, 413, "body_too_large", ["body"], id="oversized-body"),
]


@pytest.mark.parametrize(("payload", "raw", "status", "kind", "loc"), BAD_BODIES)
def test_bad_bodies_get_4xx_with_details(
    champion_server: ModelServer, payload: Any, raw: bytes | None, status: int, kind: str, loc: list[Any]
) -> None:
    got, response = champion_server.predict(payload, raw=raw)
    assert got == status, response
    assert response["detail"][0]["type"] == kind
    assert response["detail"][0]["loc"] == loc


def test_bad_bodies_are_counted_and_the_server_keeps_serving(champion_server: ModelServer) -> None:
    text = champion_server.metrics()
    assert metric(text, 'claimops_model_server_requests_total{arm="none",code="422",protocol="predict"}') >= 1
    assert champion_server.predict(CLAIM)[0] == 200


def test_not_ready_while_the_version_cannot_be_loaded(registered: Registered) -> None:
    server = ModelServer(registered.mlflow.url, MODEL, registered.workdir, version="999")
    try:
        server.start(wait_ready=False)
        status, ready = server.ready()
        assert status == 503
        assert ready["ready"] is False
        assert server.predict(CLAIM)[0] == 503
        assert metric(server.metrics(), "claimops_model_server_ready") == 0
    finally:
        server.stop()


def test_sklearn_fallback_is_visible(registered: Registered) -> None:
    server = ModelServer(
        registered.mlflow.url,
        MODEL,
        registered.workdir,
        version=registered.candidate,
        args=["--inference", "sklearn"],
    )
    try:
        server.start()
        _, ready = server.ready()
        assert ready["inference"] == "sklearn"
        assert "sklearn" in ready["fallback_reason"]
        text = server.metrics()
        assert metric(text, 'claimops_model_server_inference_fallback{arm="primary"}') == 1
        assert 'inference="sklearn"' in text
        status, response = server.predict(CLAIM)
        expected = registry_probabilities(registered.mlflow, registered.candidate, [CLAIM])[0]
        assert (status, response["predictions"][0]["probability_approved"]) == (200, pytest.approx(expected))
    finally:
        server.stop()
