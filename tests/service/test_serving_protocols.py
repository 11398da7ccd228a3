"""The model server's protocols driven by third-party clients from PyPI against a real model
server process serving a version registered in a real `mlflow server`: Triton's
`tritonclient.http` and the KServe SDK's REST client for the Open Inference Protocol v2,
MLflow's own `ScoringServerClient` for `/invocations`. The same claims give identical
probabilities through every protocol (and `/predict`); schemathesis finds no 5xx on any
operation of the server's OpenAPI document.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from claimops_stages.claims import CATEGORICAL_FEATURES, FEATURES
from claimops_stages.registry import CHAMPION
from tests.harness.client_venvs import kserve_python
from tests.harness.control_plane import REPO_ROOT
from tests.harness.mlflow_server import MlflowServer
from tests.harness.model_server import ModelServer, register_model
from tests.service.test_model_server import metric, registry_probabilities, sample_claims
from tests.unit.test_serving_protocols import MLFLOW_BAD, V2_BAD

pytestmark = pytest.mark.service

MODEL = "claim-settlement-protocols"
CLAIMS = sample_claims(40, seed=123)
#: Generated inputs per operation (about 15 operations).
MAX_EXAMPLES = 40


@pytest.fixture(scope="module")
def server(sqlite_mlflow: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    register_model(sqlite_mlflow.url, MODEL, rows=5000, seed=4, alias=CHAMPION)
    model_server = ModelServer(sqlite_mlflow.url, MODEL, tmp_path_factory.mktemp("protocols"), alias=CHAMPION)
    try:
        yield model_server.start()
    finally:
        model_server.stop()


@pytest.fixture(scope="module")
def predicted(server: ModelServer) -> list[float]:
    status, body = server.predict({"claims": CLAIMS})
    assert status == 200, body
    return [p["probability_approved"] for p in body["predictions"]]


def _triton_inputs(claims: list[dict[str, Any]], binary: bool = False) -> list[Any]:
    import tritonclient.http as triton

    inputs = []
    for name in FEATURES:
        if name in CATEGORICAL_FEATURES:
            values, datatype = np.array([c[name] for c in claims], dtype=object), "BYTES"
        elif name == "patient_age":
            values, datatype = np.array([c[name] for c in claims], dtype=np.int64), "INT64"
        else:
            values, datatype = np.array([c[name] for c in claims], dtype=np.float64), "FP64"
        tensor = triton.InferInput(name, [len(claims)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_tritonclient_reads_health_metadata_and_infers_the_same_probabilities(
    server: ModelServer, predicted: list[float]
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    metadata = client.get_model_metadata(MODEL)
    assert [i["name"] for i in metadata["inputs"]] == list(FEATURES)
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {
        "probability_approved": "FP64",
        "outcome": "BYTES",
    }
    version = metadata["versions"][0]
    # The client's default asks for binary outputs: the server answers JSON, which it reads too.
    outputs = [triton.InferRequestedOutput("probability_approved"), triton.InferRequestedOutput("outcome")]
    result = client.infer(MODEL, _triton_inputs(CLAIMS), model_version=version, outputs=outputs)
    assert result.as_numpy("probability_approved").tolist() == predicted
    outcomes = [o.decode() if isinstance(o, bytes) else o for o in result.as_numpy("outcome").tolist()]
    assert outcomes == ["Approved" if p > 0.5 else "Denied" for p in predicted]
    assert result.get_response()["model_version"] == version
    # The client's default for inputs: the binary tensor extension.
    binary = client.infer(MODEL, _triton_inputs(CLAIMS, binary=True))
    assert binary.as_numpy("probability_approved").tolist() == predicted
    # A bad tensor is the client's exception with the server's message naming the tensor.
    bad = _triton_inputs(CLAIMS[:2])
    bad[FEATURES.index("patient_age")] = triton.InferInput("patient_age", [2], "FP32")
    bad[FEATURES.index("patient_age")].set_data_from_numpy(
        np.array([30, 40], dtype=np.float32), binary_data=False
    )
    with pytest.raises(InferenceServerException, match="'patient_age' should have datatype INT64"):
        client.infer(MODEL, bad)
    with pytest.raises(InferenceServerException, match="not served here"):
        client.get_model_metadata("other-model")
    client.close()


def test_kserve_sdk_rest_client_infers_the_same_probabilities(
    server: ModelServer, predicted: list[float]
) -> None:
    """The KServe SDK pins its own FastAPI, so it runs from a virtualenv of its own."""
    script = f"""
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

claims = json.loads(sys.stdin.read())
features = {list(FEATURES)!r}
categorical = {list(CATEGORICAL_FEATURES)!r}

async def main():
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    inputs = []
    for name in features:
        if name in categorical:
            tensor = InferInput(name, [len(claims)], "BYTES")
            tensor.set_data_from_numpy(np.array([c[name] for c in claims], dtype=object), binary_data=False)
        elif name == "patient_age":
            tensor = InferInput(name, [len(claims)], "INT64")
            tensor.set_data_from_numpy(np.array([c[name] for c in claims], dtype=np.int64), binary_data=False)
        else:
            tensor = InferInput(name, [len(claims)], "FP64")
            tensor.set_data_from_numpy(np.array([c[name] for c in claims], dtype=np.float64), binary_data=False)
        inputs.append(tensor)
    ready = await client.is_server_ready({server.url!r})
    model_ready = await client.is_model_ready({server.url!r}, {MODEL!r})
    response = await client.infer({server.url!r}, InferRequest({MODEL!r}, inputs, request_id="kserve-1"), model_name={MODEL!r})
    out = {{o.name: o.as_numpy().tolist() for o in response.outputs}}
    await client.close()
    print(json.dumps({{"ready": ready, "model_ready": model_ready, "id": response.id, "outputs": out}}))

asyncio.run(main())
"""
    done = subprocess.run(
        [str(kserve_python()), "-c", script],
        input=json.dumps(CLAIMS),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["ready"]
    assert answer["model_ready"]
    assert answer["id"] == "kserve-1"
    assert answer["outputs"]["probability_approved"] == predicted


def test_mlflow_scoring_client_gets_the_same_probabilities(
    server: ModelServer, sqlite_mlflow: MlflowServer, predicted: list[float]
) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    host, port = server.url.removeprefix("http://").split(":")
    client = ScoringServerClient(host, int(port))
    client.wait_server_ready(timeout=10)
    frame = pd.DataFrame(CLAIMS)[list(FEATURES)]
    predictions = client.invoke(frame).get_predictions()
    assert predictions["probability_approved"].tolist() == predicted
    assert predictions["outcome"].tolist() == ["Approved" if p > 0.5 else "Denied" for p in predicted]
    # And every protocol agrees with the registered pipeline itself.
    _, ready = server.ready()
    expected = registry_probabilities(sqlite_mlflow, str(ready["model_version"]), CLAIMS, MODEL)
    np.testing.assert_allclose(predicted, expected, atol=1e-5)
    text = server.metrics()
    for protocol in ("predict", "v2", "mlflow"):
        assert (
            metric(
                text,
                f'claimops_model_server_requests_total{{arm="primary",code="200",protocol="{protocol}"}}',
            )
            >= 1
        )


def test_no_operation_answers_5xx(server: ModelServer) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    paths = {op.path for op in operations}
    assert {
        "/predict",
        "/invocations",
        "/v2/models/{model}/infer",
        "/v2/models/{model}/versions/{version}/infer",
    } <= paths
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case: Any) -> None:
            response = case.call(base_url=server.url, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert failures == [], "\n\n".join(failures)


def readme_protocol_calls() -> str:
    """The README's 'one call of each' block, without its port-forward line."""
    text = (REPO_ROOT / "README.md").read_text()
    block = (
        text.split("One call of each, against production:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    )
    return "\n".join(line for line in block.splitlines() if "port-forward" not in line)


def test_the_readme_calls_of_each_protocol_work_and_agree(server: ModelServer) -> None:
    script = (
        readme_protocol_calls()
        .replace("localhost:8080", server.url)
        .replace("/claim-settlement/", f"/{MODEL}/")
    )
    assert script.count("curl -s") == 3
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True)
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(answers) == 3, done.stdout
    predict, v2, mlflow_answer = answers
    probability = predict["predictions"][0]["probability_approved"]
    assert {o["name"]: o["data"] for o in v2["outputs"]}["probability_approved"] == [probability]
    assert mlflow_answer["predictions"][0]["probability_approved"] == probability


def _post(server: ModelServer, path: str, body: Any) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, raw, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(("body", "status", "message"), V2_BAD)
def test_v2_bad_requests_to_the_process_are_4xx_naming_the_tensor(
    server: ModelServer, body: Any, status: int, message: str
) -> None:
    got, answer = _post(server, f"/v2/models/{MODEL}/infer", body)
    assert got == status, answer
    # The unit tables name their own model ('claims'); this server's is MODEL.
    assert message.replace("'claims'", repr(MODEL)) in answer["error"]


@pytest.mark.parametrize(("body", "status", "message"), MLFLOW_BAD)
def test_invocations_bad_bodies_to_the_process_are_4xx(
    server: ModelServer, body: Any, status: int, message: str
) -> None:
    got, answer = _post(server, "/invocations", body)
    assert got == status, answer
    assert message in answer["message"]
