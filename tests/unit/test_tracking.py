"""Waiting for MLflow, then failing clearly, when it cannot be reached (no server needed:
nothing listens, or a fake clock stands in for the wait)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import pytest
import requests

from claimops_stages import tracking
from claimops_stages.contract import StageInputs
from claimops_stages.runner import main, run_stage


def test_probe_of_a_closed_port_fails_with_the_address() -> None:
    uri = tracking.unreachable_uri()
    with pytest.raises(tracking.MLflowUnavailableError, match=uri.rsplit(":", 1)[1]):
        tracking.probe(uri, patience=0)


@pytest.mark.parametrize("uri", ["sqlite:///{tmp}/mlflow.db", "file://{tmp}/mlruns", "{tmp}/mlruns"])
def test_local_stores_are_not_probed(uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_request(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(f"probe() sent a request for a local store: {args}")

    monkeypatch.setattr(tracking.requests, "get", no_request)
    monkeypatch.setattr(tracking.time, "sleep", no_request)
    tracking.probe(uri.format(tmp=tmp_path))  # returns without a request or a sleep


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.ConnectionError("refused"), True),
        (RuntimeError("HTTPConnectionPool(host='x', port=1): Max retries exceeded with url: /api"), True),
        (ValueError("bad input"), False),
    ],
    ids=["requests-connection-error", "mlflow-wrapped-retries", "unrelated"],
)
def test_connection_errors_are_recognised(exc: BaseException, expected: bool) -> None:
    assert tracking.is_connection_error(exc) is expected


def test_cause_chain_is_followed() -> None:
    outer = RuntimeError("log_metric failed")
    outer.__cause__ = requests.ConnectionError("refused")
    assert tracking.is_connection_error(outer)


class _FlakyServer:
    """Stands in for `requests.get`, `time.monotonic` and `time.sleep` on a fake clock. Until
    `down_for` seconds have passed every request hangs until both its timeouts expire (a
    server that accepts connections but does not answer) or is refused; then it answers 200."""

    def __init__(self, down_for: float, hang: bool = True) -> None:
        self.down_for = down_for
        self.hang = hang
        self.clock = 0.0
        self.timeouts: list[object] = []

    def get(self, url: str, timeout: object = None, **kwargs: object) -> requests.Response:
        self.timeouts.append(timeout)
        assert isinstance(timeout, tuple), f"probe() sent {url} without (connect, read) timeouts"
        if self.clock >= self.down_for:
            response = requests.Response()
            response.status_code = 200
            return response
        if self.hang:
            self.clock += sum(timeout)
            raise requests.ReadTimeout(f"read timed out ({url})")
        raise requests.ConnectionError(f"connection refused ({url})")

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(tracking.requests, "get", self.get)
        monkeypatch.setattr(tracking.time, "sleep", self.sleep)
        monkeypatch.setattr(tracking.time, "monotonic", lambda: self.clock)


def test_probe_of_a_hanging_server_gives_up_once_its_patience_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Worst case: every attempt hangs until its timeouts. The stage reports soon after its
    # patience, not after MLflow's own four-minute retry schedule.
    server = _FlakyServer(down_for=float("inf"))
    server.install(monkeypatch)
    with pytest.raises(
        tracking.MLflowUnavailableError, match=r"unreachable for \d+ s \(\d+ attempts; last: ReadTimeout"
    ):
        tracking.probe("http://mlflow.invalid:5000", patience=60)
    assert 60 - tracking.PROBE_BACKOFF_MAX <= server.clock <= 60 + 6, server.clock
    assert len(server.timeouts) >= 5  # it kept asking, with capped backoff


@pytest.mark.parametrize("hang", [True, False], ids=["hanging", "refusing"])
def test_probe_rides_out_an_mlflow_restart(monkeypatch: pytest.MonkeyPatch, hang: bool) -> None:
    # An MLflow pod restart on kind: about 90 s without an answer.
    server = _FlakyServer(down_for=90, hang=hang)
    server.install(monkeypatch)
    tracking.probe("http://mlflow.example:5000")
    assert 90 <= server.clock <= 90 + tracking.PROBE_BACKOFF_MAX + 6
    assert tracking.PROBE_PATIENCE_SECONDS > 90


def test_probe_reports_an_outage_longer_than_its_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _FlakyServer(down_for=tracking.PROBE_PATIENCE_SECONDS + 30, hang=False)
    server.install(monkeypatch)
    with pytest.raises(tracking.MLflowUnavailableError, match="connection refused"):
        tracking.probe("http://mlflow.example:5000")
    assert server.clock <= tracking.PROBE_PATIENCE_SECONDS


def test_probe_retries_until_the_server_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([503, 200])
    asked: list[str] = []

    def get(url: str, **kwargs: object) -> requests.Response:
        asked.append(url)
        response = requests.Response()
        response.status_code = next(answers)
        return response

    monkeypatch.setattr(tracking.requests, "get", get)
    monkeypatch.setattr(tracking.time, "sleep", lambda seconds: None)
    tracking.probe("http://mlflow.example:5000/")
    assert asked == ["http://mlflow.example:5000/health"] * 2


def test_mlflow_connection_injection_fails_with_its_reason() -> None:
    result = run_stage("full-train", StageInputs(rows=1000, failures=["MLflowConnection"]))
    assert result.reason == "MLflowUnavailable"
    assert not result.passed
    assert result.mlflow_run_id is None
    assert "unreachable for" in result.message


def test_cli_exit_code_and_termination_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = tmp_path / "termination-log"
    monkeypatch.setenv("CLAIMOPS_TERMINATION_MESSAGE_PATH", str(message))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.unreachable_uri())
    monkeypatch.setattr(tracking, "PROBE_PATIENCE_SECONDS", 2.0)  # the wait has its own tests
    assert main(["rollback", "--run", "r9"]) == 1
    assert json.loads(message.read_text())["reason"] == "MLflowUnavailable"


def test_an_artifact_store_failure_is_named_as_such() -> None:
    upload = RuntimeError(
        "API request to http://mlflow:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.pkl "
        "failed with exception HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded with url: "
        "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.pkl "
        "(Caused by ResponseError('too many 500 error responses'))\nsecond line"
    )
    message = tracking.unavailable_message(upload)
    assert message.startswith("MLflow's artifact store failed")
    assert "bucket missing, full or read-only" in message
    assert "second line" not in message
    assert len(message) <= 500
    refused = ConnectionRefusedError("[Errno 111] Connection refused")
    assert tracking.unavailable_message(refused) == "[Errno 111] Connection refused"
