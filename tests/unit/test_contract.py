"""The stage contract the operator and the UI import: names, arguments, result JSON."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from claimops_stages.contract import (
    FAILURE_REASONS,
    MAX_RESULT_BYTES,
    STAGES,
    FailureMode,
    Reason,
    ResultStatus,
    StageInputs,
    StageKind,
    StageResult,
    cli_stages,
    result_json_schema,
    stage_names,
    stage_source,
)
from claimops_stages.stages import stage_function


@pytest.mark.parametrize("stage", [s.name for s in cli_stages()])
def test_every_job_stage_has_a_cli_function(stage: str) -> None:
    assert stage_function(stage).__name__ == stage.replace("-", "_")


def test_stage_names_are_unique() -> None:
    assert len(set(stage_names())) == len(STAGES)


@pytest.mark.parametrize(
    "inputs",
    [
        StageInputs(),
        StageInputs(
            run="cpr-7", commit_sha="deadbee", rows=100_000, failures=["SchemaValidation", "MLflowConnection"]
        ),
        StageInputs(candidate_version="3", requested_by="alice", min_auc=0.8, quick_sample_fraction=0.5),
    ],
    ids=["defaults", "failures-and-rows", "deploy-inputs"],
)
def test_inputs_round_trip_through_cli_arguments(inputs: StageInputs) -> None:
    assert StageInputs.parse(inputs.to_args()) == inputs


def test_unknown_failure_mode_is_refused() -> None:
    with pytest.raises(SystemExit):
        StageInputs.parse(["--failure", "CosmicRays"])


def test_each_failure_mode_has_a_documented_reason() -> None:
    assert set(FAILURE_REASONS) == set(FailureMode)
    assert FAILURE_REASONS[FailureMode.MLFLOW_CONNECTION] is Reason.MLFLOW_UNAVAILABLE


def test_result_fits_in_a_termination_message() -> None:
    result = StageResult(
        "full-train",
        ResultStatus.FAILED,
        Reason.TRAINING_FAILED.value,
        message="x" * 20_000,
        metrics={f"m{i}": float(i) for i in range(200)},
        outputs={f"o{i}": "y" * 50 for i in range(50)},
    )
    text = result.to_json()
    assert len(text.encode()) <= MAX_RESULT_BYTES
    parsed = StageResult.from_json(text)
    assert parsed.status is ResultStatus.FAILED
    assert parsed.reason == "TrainingFailed"


def test_result_is_written_where_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "termination-log"
    monkeypatch.setenv("CLAIMOPS_TERMINATION_MESSAGE_PATH", str(target))
    StageResult("rollback", ResultStatus.SUCCEEDED, "Passed", model_version="1").write()
    assert json.loads(target.read_text())["model_version"] == "1"


def test_contract_imports_without_ml_dependencies() -> None:
    # The operator and the UI import the contract in images without numpy/mlflow.
    code = (
        "import sys; sys.modules.update({m: None for m in ('numpy', 'pandas', 'mlflow', 'sklearn')});"
        "import claimops_stages.contract as c; print(len(c.STAGES))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(len(STAGES))


def test_declared_cli_arguments_are_stage_inputs() -> None:
    known = {f.name for f in fields(StageInputs)}
    for stage in cli_stages():
        assert stage.arguments, stage.name
        assert set(stage.arguments) <= known, stage.name
    # Only Job stages take CLI arguments.
    assert all(not s.arguments for s in STAGES if s.kind is not StageKind.JOB)


@pytest.mark.parametrize("stage", ["data-validation", "evaluate-vs-champion", "rollback"])
def test_stage_source_is_the_function_the_stage_runs(stage: str) -> None:
    source = stage_source(stage)
    assert source == inspect.getsource(stage_function(stage)).rstrip("\n")
    assert source.startswith(f"def {stage.replace('-', '_')}(")


def test_result_schema_accepts_a_real_result() -> None:
    schema = result_json_schema()
    data = json.loads(StageResult("rollback", ResultStatus.SUCCEEDED, "Passed").to_json())
    assert set(schema["required"]) <= set(data)
    assert set(data) <= set(schema["properties"])
