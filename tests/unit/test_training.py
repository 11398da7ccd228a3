"""Training's explanation step: the SHAP values do not depend on how the rows are spread."""

from __future__ import annotations

import numpy as np
import pytest

from claimops_stages import training
from claimops_stages.claims import generate_claims


def test_shap_values_from_forked_workers_equal_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = training.train(generate_claims(3000, seed=3), training.TrainingConfig(n_estimators=12, seed=3))
    monkeypatch.setattr(training.os, "sched_getaffinity", lambda pid: {0, 1, 2})  # three workers
    spread = training.shap_summary(outcome.pipeline, outcome.x_test, rows=400, trees=6, seed=3)
    monkeypatch.setattr(training.os, "sched_getaffinity", lambda pid: {0})
    single = training.shap_summary(outcome.pipeline, outcome.x_test, rows=400, trees=6, seed=3)
    assert spread.values.shape == single.values.shape == (400, len(training.FEATURES))
    np.testing.assert_allclose(spread.values, single.values, rtol=0, atol=1e-12)
    assert np.abs(single.values).sum() > 0
