"""Fast checks of the ML code, run by the ci-tests stage inside the stage image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from claimops_stages.claims import FEATURES, generate_claims
from claimops_stages.contract import FailureMode, ResultStatus, StageInputs, StageResult
from claimops_stages.drift import compare
from claimops_stages.evaluation import GateThresholds, auc, gate
from claimops_stages.evaluation import compare as compare_models
from claimops_stages.training import TrainingConfig, train
from claimops_stages.validation import claims_schema, validate


def test_generator_is_reproducible() -> None:
    pd.testing.assert_frame_equal(generate_claims(500, seed=3), generate_claims(500, seed=3))


def test_generated_claims_pass_validation() -> None:
    report = validate(generate_claims(2000, seed=5), claims_schema(min_rows=2000))
    assert report.passed, report.summary()


def test_missing_column_is_named() -> None:
    report = validate(generate_claims(2000, seed=5).drop(columns=["patient_age"]), claims_schema())
    assert report.missing_columns == ["patient_age"]


def test_severe_drift_is_detected_and_none_is_not() -> None:
    reference = generate_claims(5000, seed=1)
    assert not compare(reference, generate_claims(5000, seed=2)).drifted
    assert (
        "billed_amount" in compare(reference, generate_claims(5000, seed=2, drift="severe")).drifted_features
    )


def test_model_learns_the_settlement_rule(training_claims: pd.DataFrame) -> None:
    outcome = train(training_claims, TrainingConfig(n_estimators=40, max_depth=8, seed=1))
    assert 0.75 <= outcome.metrics["auc_roc"] < 0.97, outcome.metrics
    assert set(outcome.x_test.columns) == set(FEATURES)


@pytest.mark.parametrize(
    ("candidate_auc_gap", "passed"), [(0.0, True), (-0.2, False)], ids=["equal-passes", "regression-fails"]
)
def test_gate_blocks_a_regression(candidate_auc_gap: float, passed: bool) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.6).astype(int)
    champion = y * 0.5 + rng.random(3000)
    candidate = champion if candidate_auc_gap == 0 else rng.random(3000)
    decision = gate(compare_models(y, candidate, champion, samples=50), GateThresholds(min_auc=0.5))
    assert decision.passed is passed
    assert auc(y, champion) > 0.6


def test_contract_round_trips() -> None:
    inputs = StageInputs(run="r1", failures=[FailureMode.TRAINING_ERROR.value], candidate_version="3")
    assert StageInputs.parse(inputs.to_args()) == inputs
    result = StageResult.from_json(StageResult("ci-tests", ResultStatus.SUCCEEDED, "Passed", "ok").to_json())
    assert result.passed
