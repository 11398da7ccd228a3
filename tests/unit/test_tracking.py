"""Failing fast when MLflow cannot be reached (no server needed: nothing listens)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from claimops_stages import tracking
from claimops_stages.contract import StageInputs
from claimops_stages.runner import main, run_stage


def test_probe_of_a_closed_port_fails_with_the_address() -> None:
    uri = tracking.unreachable_uri()
    with pytest.raises(tracking.MLflowUnavailableError, match=uri.rsplit(":", 1)[1]):
        tracking.probe(uri, attempts=1)


def test_local_stores_need_no_probe(tmp_path: Path) -> None:
    tracking.probe(f"sqlite:///{tmp_path}/mlflow.db")  # returns: nothing to reach


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


def test_probe_budget_stays_inside_thirty_seconds() -> None:
    # Worst case (every attempt hangs until its timeouts): the stage still reports within 30 s.
    # (The measured time of the real failure is printed by `make bench`.)
    connect, read = tracking.PROBE_TIMEOUT
    backoff = sum(tracking.PROBE_BACKOFF * 2**i for i in range(tracking.PROBE_ATTEMPTS - 1))
    assert tracking.PROBE_ATTEMPTS * (connect + read) + backoff < 30


def test_mlflow_connection_injection_fails_with_its_reason() -> None:
    result = run_stage("full-train", StageInputs(rows=1000, failures=["MLflowConnection"]))
    assert result.reason == "MLflowUnavailable"
    assert not result.passed
    assert result.mlflow_run_id is None
    assert "unreachable after 3 attempts" in result.message


def test_cli_exit_code_and_termination_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = tmp_path / "termination-log"
    monkeypatch.setenv("CLAIMOPS_TERMINATION_MESSAGE_PATH", str(message))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.unreachable_uri())
    assert main(["rollback", "--run", "r9"]) == 1
    assert json.loads(message.read_text())["reason"] == "MLflowUnavailable"
