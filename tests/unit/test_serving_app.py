"""The model server app in-process (Starlette's TestClient): readiness, responses, A/B split
and metrics, with models from an in-memory registry (a real ModelSource, not a mock)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from claimops_stages.claims import generate_claims
from claimops_stages.serving.app import create_app
from claimops_stages.serving.config import ServerConfig
from claimops_stages.training import model_frame
from tests.unit.serving_helpers import CLAIMS, InMemoryRegistry, metric, wait_ready


def test_ready_describes_both_arms(ab_client: TestClient) -> None:
    ready = ab_client.get("/ready").json()
    assert ready["model_version"] == "1"
    assert ready["inference"] == "onnx"
    assert ready["fallback_reason"] is None
    assert ready["model_alias"] == "champion"
    assert ready["ab"]["challenger_version"] == "2"
    assert ready["ab"]["traffic_percent"] == 20
    assert ready["ab"]["challenger_inference"] == "onnx"


def test_ab_split_and_per_arm_metrics(ab_client: TestClient, registry: InMemoryRegistry) -> None:
    responses = [ab_client.post("/predict", json=CLAIMS[i % 5]).json() for i in range(50)]
    arms = [(r["arm"], r["model_version"]) for r in responses]
    assert arms.count(("challenger", "2")) == 10
    assert arms.count(("primary", "1")) == 40
    # Each arm answers with its own model.
    for response, i in zip(responses, range(50), strict=True):
        pipeline = registry.versions[response["model_version"]]
        expected = pipeline.predict_proba(model_frame(generate_claims(5, seed=11)).iloc[[i % 5]])[0, 1]
        assert response["predictions"][0]["probability_approved"] == pytest.approx(expected, abs=1e-5)
    text = ab_client.get("/metrics").text
    assert (
        metric(text, 'claimops_model_server_requests_total{arm="challenger",code="200",protocol="predict"}')
        == 10
    )
    assert (
        metric(text, 'claimops_model_server_requests_total{arm="primary",code="200",protocol="predict"}')
        == 40
    )
    assert metric(text, 'claimops_model_server_request_duration_seconds_count{arm="challenger"}') == 10
    assert metric(text, 'claimops_model_server_predictions_total{arm="primary"') == 40
    assert (
        'model_info{arm="challenger",fallback_reason="",inference="onnx",model_name="claims",model_version="2"}'
        in text
    )


def test_batch_response_keeps_order_and_claim_ids(ab_client: TestClient) -> None:
    claims = [{**c, "claim_id": f"c{i}"} for i, c in enumerate(CLAIMS)]
    response = ab_client.post("/predict", json={"claims": claims})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["claim_id"] for p in predictions] == [f"c{i}" for i in range(5)]
    assert all(
        p["outcome"] == ("Approved" if p["probability_approved"] > 0.5 else "Denied") for p in predictions
    )


def test_bad_body_is_422_and_counted(ab_client: TestClient) -> None:
    response = ab_client.post("/predict", json={**CLAIMS[0], "patient_age": "old"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "patient_age"]
    assert (
        metric(
            ab_client.get("/metrics").text,
            'claimops_model_server_requests_total{arm="none",code="422",protocol="predict"}',
        )
        == 1
    )


@pytest.mark.parametrize(
    ("config", "broken", "reason"),
    [
        pytest.param(
            ServerConfig("claims", model_version="1"), True, "registry unreachable", id="registry-down"
        ),
        pytest.param(ServerConfig("claims", model_alias="staging"), False, "staging", id="unknown-alias"),
    ],
)
def test_not_ready_until_loaded(
    registry: InMemoryRegistry, config: ServerConfig, broken: bool, reason: str
) -> None:
    source = InMemoryRegistry(registry.versions, registry.aliases, broken=broken)
    with TestClient(create_app(config, source)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        deadline = time.monotonic() + 10
        while reason not in str(client.get("/ready").json()) and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert reason in ready.json()["reason"]
        assert client.post("/predict", json=CLAIMS[0]).status_code == 503


def test_sklearn_fallback_is_reported(registry: InMemoryRegistry) -> None:
    config = ServerConfig("claims", model_version="2", inference="sklearn")
    with TestClient(create_app(config, registry)) as client:
        ready = wait_ready(client)
        assert ready["inference"] == "sklearn"
        assert "sklearn requested" in ready["fallback_reason"]
        assert (
            metric(client.get("/metrics").text, 'claimops_model_server_inference_fallback{arm="primary"}')
            == 1
        )
        assert client.post("/predict", json=CLAIMS[0]).json()["model_version"] == "2"
