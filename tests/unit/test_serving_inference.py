"""ONNX Runtime serves only when it reproduces scikit-learn; otherwise the server falls back
and says why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from claimops_stages.claims import (
    CATEGORICAL_FEATURES,
    CATEGORIES,
    FEATURES,
    NUMERIC_FEATURES,
    generate_claims,
    labels,
)
from claimops_stages.serving.inference import PROBABILITY_TOLERANCE, check_sample, select_predictor
from claimops_stages.training import TrainingConfig, model_frame, train


@pytest.fixture(scope="module")
def pipeline() -> Any:
    return train(
        generate_claims(3000, seed=5), TrainingConfig(n_estimators=20, max_depth=8, n_jobs=1)
    ).pipeline


@pytest.fixture(scope="module")
def sample() -> dict[str, list[Any]]:
    columns = check_sample()
    return {name: values[:300] for name, values in columns.items()}


def _log1p_pipeline() -> Any:
    # A Python function inside the pipeline: skl2onnx cannot convert it.
    encoder = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(
                    categories=[list(CATEGORIES[c]) for c in CATEGORICAL_FEATURES], handle_unknown="ignore"
                ),
                list(CATEGORICAL_FEATURES),
            ),
            ("numeric", FunctionTransformer(np.log1p), list(NUMERIC_FEATURES)),
        ]
    )
    claims = generate_claims(1000, seed=3)
    model = Pipeline(
        [("encode", encoder), ("forest", RandomForestClassifier(n_estimators=5, random_state=0))]
    )
    return model.fit(model_frame(claims), labels(claims))


def test_onnx_serves_when_it_matches_sklearn(pipeline: Any, sample: dict[str, list[Any]]) -> None:
    selection = select_predictor(pipeline, sample=sample)
    assert (selection.inference, selection.fallback_reason) == ("onnx", None)
    assert selection.max_abs_diff is not None
    assert selection.max_abs_diff <= PROBABILITY_TOLERANCE
    reference = pipeline.predict_proba(model_frame(generate_claims(50, seed=99)))[:, 1]
    columns = {n: model_frame(generate_claims(50, seed=99))[n].tolist() for n in FEATURES}
    assert np.max(np.abs(selection.predictor.predict(columns) - reference)) <= PROBABILITY_TOLERANCE


@pytest.mark.parametrize(
    ("make", "kwargs", "reason"),
    [
        pytest.param(None, {"tolerance": 0.0}, "differs from scikit-learn", id="not-exact"),
        pytest.param(None, {"mode": "sklearn"}, "sklearn requested", id="sklearn-requested"),
        pytest.param(_log1p_pipeline, {}, "ONNX conversion failed", id="not-convertible"),
    ],
)
def test_falls_back_to_sklearn_with_a_reason(
    pipeline: Any, sample: dict[str, list[Any]], make: Any, kwargs: dict[str, Any], reason: str
) -> None:
    model = make() if make is not None else pipeline
    selection = select_predictor(model, sample=sample, **kwargs)
    assert selection.inference == "sklearn"
    assert selection.fallback_reason is not None
    assert reason in selection.fallback_reason
    # The fallback still predicts what the pipeline predicts.
    frame = model_frame(generate_claims(20, seed=8))
    expected = model.predict_proba(frame)[:, 1]
    assert selection.predictor.predict({n: frame[n].tolist() for n in FEATURES}) == pytest.approx(expected)
