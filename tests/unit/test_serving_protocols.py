"""The model server's other protocols in-process: the Open Inference Protocol v2 and MLflow's
`/invocations` give the same probabilities as `/predict` for the same claims, share the A/B
split and the metrics, and refuse bad bodies with 4xx naming the field (never 5xx)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from claimops_stages.claims import CATEGORICAL_FEATURES, FEATURES
from claimops_stages.serving.app import create_app
from claimops_stages.serving.config import ServerConfig
from claimops_stages.serving.schema import MAX_BATCH_CLAIMS
from tests.unit.serving_helpers import CLAIMS, InMemoryRegistry, metric, wait_ready

DATATYPES = {**dict.fromkeys(CATEGORICAL_FEATURES, "BYTES"), "billed_amount": "FP64",
             "allowed_amount": "FP64", "patient_age": "INT64"}  # fmt: skip


def v2_request(claims: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    inputs = [
        {"name": f, "datatype": DATATYPES[f], "shape": [len(claims)], "data": [c[f] for c in claims]}
        for f in FEATURES
    ]
    return {"inputs": inputs, **extra}


@pytest.fixture
def client(registry: InMemoryRegistry) -> Iterator[TestClient]:
    with TestClient(create_app(ServerConfig("claims", model_alias="champion"), registry)) as c:
        wait_ready(c)
        yield c


def test_three_protocols_give_the_same_probabilities(client: TestClient) -> None:
    predict = client.post("/predict", json={"claims": CLAIMS}).json()
    expected = [p["probability_approved"] for p in predict["predictions"]]
    v2 = client.post("/v2/models/claims/infer", json=v2_request(CLAIMS, id="req-1")).json()
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["probability_approved"]["data"] == expected
    assert outputs["probability_approved"]["shape"] == [5]
    assert outputs["outcome"]["data"] == [p["outcome"] for p in predict["predictions"]]
    assert (v2["id"], v2["model_name"], v2["model_version"]) == ("req-1", "claims", "1")
    columns = list(FEATURES)
    for body in (
        {"dataframe_split": {"columns": columns, "data": [[c[f] for f in columns] for c in CLAIMS]}},
        {"dataframe_records": CLAIMS},
        {"instances": CLAIMS},
        {"inputs": CLAIMS},
        {"inputs": {f: [c[f] for c in CLAIMS] for f in columns}},
    ):
        got = client.post("/invocations", json=body)
        assert got.status_code == 200, got.text
        assert [p["probability_approved"] for p in got.json()["predictions"]] == expected
    text = client.get("/metrics").text
    for protocol, count in (("predict", 1), ("v2", 1), ("mlflow", 5)):
        series = f'claimops_model_server_requests_total{{arm="primary",code="200",protocol="{protocol}"}}'
        assert metric(text, series) == count


def test_v2_nested_data_shape_n_by_1_and_requested_outputs(client: TestClient) -> None:
    body = v2_request(CLAIMS[:2], outputs=[{"name": "outcome"}])
    for tensor in body["inputs"]:
        tensor["shape"] = [2, 1]
        tensor["data"] = [[v] for v in tensor["data"]]
    got = client.post("/v2/models/claims/versions/1/infer", json=body)
    assert got.status_code == 200, got.text
    assert [o["name"] for o in got.json()["outputs"]] == ["outcome"]


def test_v2_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/claims/ready").status_code == 200
    assert client.get("/v2/models/claims/versions/1/ready").status_code == 200
    server = client.get("/v2").json()
    assert server["name"] == "claimops-model-server"
    meta = client.get("/v2/models/claims").json()
    assert meta["versions"] == ["1"]
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == DATATYPES
    assert [o["name"] for o in meta["outputs"]] == ["probability_approved", "outcome"]
    missing = client.get("/v2/models/other/ready")
    assert missing.status_code == 404
    assert "'claims'" in missing.json()["error"]
    version = client.get("/v2/models/claims/versions/7")
    assert version.status_code == 404
    assert "served versions: 1" in version.json()["error"]
    assert client.get("/ping").status_code == 200


def test_v2_version_picks_the_arm_and_no_version_follows_the_split(ab_client: TestClient) -> None:
    pinned = [
        ab_client.post("/v2/models/claims/versions/2/infer", json=v2_request(CLAIMS[:1])) for _ in range(5)
    ]
    assert {r.json()["model_version"] for r in pinned} == {"2"}
    split = [
        ab_client.post("/v2/models/claims/infer", json=v2_request(CLAIMS[:1])).json()["model_version"]
        for _ in range(10)
    ]
    assert split.count("2") == 2  # 20 % of 10
    assert ab_client.get("/v2/models/claims").json()["versions"] == ["1", "2"]


def _tensor(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in body["inputs"] if t["name"] == name)


def _v2_bad(mutate: Any) -> dict[str, Any]:
    body = v2_request(CLAIMS[:2])
    mutate(body)
    return body


V2_BAD = [
    pytest.param(b"{nope", 400, "JSON decode error", id="malformed-json"),
    pytest.param([], 400, "JSON object", id="not-an-object"),
    pytest.param({"inputs": []}, 400, "inputs should be a non-empty list", id="no-inputs"),
    pytest.param(_v2_bad(lambda b: b["inputs"].pop(0)), 400, "'cpt_bucket' is required", id="missing-input"),
    pytest.param(_v2_bad(lambda b: b["inputs"].append({**b["inputs"][0]})), 400, "given twice", id="duplicate"),
    pytest.param(
        _v2_bad(lambda b: _tensor(b, "billed_amount").update(datatype="BYTES")), 400,
        "should have datatype FP64", id="wrong-datatype",
    ),
    pytest.param(
        _v2_bad(lambda b: _tensor(b, "patient_age").update(datatype="FP32")), 400,
        "'patient_age' should have datatype INT64", id="float-age",
    ),
    pytest.param(
        _v2_bad(lambda b: _tensor(b, "billed_amount").update(shape=[3])), 400, "has shape [3]", id="shape-mismatch",
    ),
    pytest.param(
        _v2_bad(lambda b: _tensor(b, "billed_amount").update(shape=[2, 2])), 400, "shape [N] or [N, 1]", id="bad-shape",
    ),
    pytest.param(
        _v2_bad(lambda b: _tensor(b, "cpt_bucket").update(data=["Dentistry", "Surgery"])), 400,
        "input 'cpt_bucket' (inputs[0]) data.0: Input should be one of", id="unknown-category",
    ),
    pytest.param(
        _v2_bad(lambda b: _tensor(b, "billed_amount").update(data=[-1.0, 5.0])), 400,
        "'billed_amount' (inputs[2]) data.0: Input should be greater than or equal", id="negative-amount",
    ),
    pytest.param(
        _v2_bad(lambda b: _tensor(b, "allowed_amount").update(data=[1e6, 1e6])), 400,
        "should be less than or equal to billed_amount", id="allowed-over-billed",
    ),
    pytest.param(
        _v2_bad(lambda b: _tensor(b, "patient_age").update(data=[30, "old"])), 400,
        "each value should be an integer", id="string-in-int-tensor",
    ),
    pytest.param(
        _v2_bad(lambda b: b["inputs"].append({"name": "ssn", "datatype": "BYTES", "shape": [2], "data": ["1", "2"]})),
        400, "No model input 'ssn'", id="unknown-input",
    ),
    pytest.param(_v2_bad(lambda b: b.update(outputs=[{"name": "score"}])), 400, "No model output 'score'", id="unknown-output"),
    pytest.param(_v2_bad(lambda b: b.update(id=7)), 400, "id should be a string", id="id-not-string"),
    pytest.param(
        _v2_bad(lambda b: b.update(model_name="other")), 400, "model_name 'other' differs from the URL's 'claims'",
        id="body-names-another-model",
    ),
    pytest.param(_v2_bad(lambda b: b.update(extra=1)), 400, "Extra inputs are not permitted", id="extra-key"),
    pytest.param(
        v2_request(CLAIMS[:1] * (MAX_BATCH_CLAIMS + 1)), 413, f"At most {MAX_BATCH_CLAIMS} claims", id="too-many",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "message"), V2_BAD)
def test_v2_bad_requests_are_4xx_naming_the_tensor(
    client: TestClient, body: Any, status: int, message: str
) -> None:
    got = client.post(
        "/v2/models/claims/infer", **({"content": body} if isinstance(body, bytes) else {"json": body})
    )
    assert got.status_code == status, got.text
    assert message in got.json()["error"]


MLFLOW_BAD = [
    pytest.param({}, 400, "exactly one of", id="empty"),
    pytest.param({"dataframe_records": CLAIMS, "instances": CLAIMS}, 400, "exactly one of", id="two-formats"),
    pytest.param({"records": CLAIMS}, 400, "exactly one of", id="unknown-format"),
    pytest.param({"dataframe_split": {"columns": ["cpt_bucket"], "data": [["Surgery", 1]]}}, 400,
                 "list of 1 values", id="row-length"),
    pytest.param({"dataframe_split": {"data": []}}, 400, "columns should be a list", id="split-no-columns"),
    pytest.param({"dataframe_records": [{**CLAIMS[0], "patient_age": 300}]}, 400,
                 "dataframe_records.0.patient_age: Input should be less than or equal to 100", id="age-range"),
    pytest.param({"instances": [{k: v for k, v in CLAIMS[0].items() if k != "cpt_bucket"}]}, 400,
                 "instances.0.cpt_bucket: Field required", id="missing-field"),
    pytest.param({"inputs": {"cpt_bucket": ["Surgery"], "billed_amount": [1.0, 2.0]}}, 400,
                 "same length", id="ragged-columns"),
    pytest.param({"inputs": "claims"}, 400, "list of claim objects", id="inputs-string"),
    pytest.param({"dataframe_records": []}, 400, "At least 1 claim", id="no-rows"),
    pytest.param({"dataframe_records": CLAIMS, "params": {"threshold": 0.3}}, 400, "no params", id="params"),
    pytest.param({"dataframe_records": [{**CLAIMS[0], "ssn": "1"}]}, 400, "ssn: Extra inputs", id="extra-field"),
    pytest.param({"dataframe_records": CLAIMS[:1] * (MAX_BATCH_CLAIMS + 1)}, 413, "At most", id="too-many"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "message"), MLFLOW_BAD)
def test_invocations_bad_bodies_are_4xx_in_mlflows_shape(
    client: TestClient, body: Any, status: int, message: str
) -> None:
    got = client.post("/invocations", json=body)
    assert got.status_code == status, got.text
    assert message in got.json()["message"]
    assert got.json()["error_code"] in ("BAD_REQUEST", "RESOURCE_LIMIT_EXCEEDED")


def test_invocations_wants_json(client: TestClient) -> None:
    got = client.post("/invocations", content=b"a,b\n1,2", headers={"content-type": "text/csv"})
    assert got.status_code == 415
    assert "Content-Type should be application/json" in got.json()["message"]


def test_refusals_are_counted_per_protocol(client: TestClient) -> None:
    client.post("/v2/models/claims/infer", json={"inputs": []})
    client.post("/invocations", json={})
    text = client.get("/metrics").text
    assert metric(text, 'claimops_model_server_requests_total{arm="none",code="400",protocol="v2"}') == 1
    assert metric(text, 'claimops_model_server_requests_total{arm="none",code="400",protocol="mlflow"}') == 1


def _binary_request(claims: list[dict[str, Any]]) -> tuple[bytes, int]:
    """A request in the binary tensor extension, built as tritonclient builds it."""
    header: dict[str, Any] = {"inputs": []}
    chunks: list[bytes] = []
    for name in FEATURES:
        values = [c[name] for c in claims]
        if DATATYPES[name] == "BYTES":
            raw = b"".join(len(v.encode()).to_bytes(4, "little") + v.encode() for v in values)
        else:
            raw = np.array(values, dtype="<f8" if DATATYPES[name] == "FP64" else "<i8").tobytes()
        header["inputs"].append({"name": name, "datatype": DATATYPES[name], "shape": [len(values)],
                                 "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
        chunks.append(raw)
    head = json.dumps(header).encode()
    return head + b"".join(chunks), len(head)


def test_v2_binary_inputs_score_like_json(client: TestClient) -> None:
    body, length = _binary_request(CLAIMS)
    headers = {"Inference-Header-Content-Length": str(length), "Content-Type": "application/octet-stream"}
    got = client.post("/v2/models/claims/infer", content=body, headers=headers)
    assert got.status_code == 200, got.text
    as_json = client.post("/v2/models/claims/infer", json=v2_request(CLAIMS)).json()
    assert got.json()["outputs"] == as_json["outputs"]
    for bad, message in (
        (body[:-3], "binary_data_size exceeds the body"),
        (body + b"xx", "2 bytes after the last binary input"),
    ):
        refused = client.post("/v2/models/claims/infer", content=bad, headers=headers)
        assert refused.status_code == 400
        assert message in refused.json()["error"]
    wrong = client.post(
        "/v2/models/claims/infer", content=body, headers={"Inference-Header-Content-Length": "x"}
    )
    assert wrong.status_code == 400
    assert "Inference-Header-Content-Length" in wrong.json()["error"]
