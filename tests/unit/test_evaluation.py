"""AUC, the paired bootstrap and the promotion gate."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from claimops_stages.contract import Reason
from claimops_stages.evaluation import Comparison, GateThresholds, auc, degrade, gate, paired_bootstrap


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    y = (rng.random(5000) < 0.6).astype(int)
    strong = np.round(y * 0.6 + rng.random(5000), 2)  # rounded: plenty of ties
    weak = np.round(y * 0.3 + rng.random(5000), 2)
    return y, strong, weak


def test_auc_matches_sklearn_with_ties(scored: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, strong, weak = scored
    assert auc(y, strong) == pytest.approx(roc_auc_score(y, strong), abs=1e-12)
    assert auc(y, weak) == pytest.approx(roc_auc_score(y, weak), abs=1e-12)


def test_paired_interval_contains_the_difference(scored: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, strong, weak = scored
    delta, low, high = paired_bootstrap(y, strong, weak, samples=400)
    assert delta == pytest.approx(roc_auc_score(y, strong) - roc_auc_score(y, weak))
    assert 0 < low < delta < high
    # Same model on both sides: the paired difference is exactly zero in every resample.
    assert paired_bootstrap(y, strong, strong, samples=50) == (0.0, 0.0, 0.0)


def test_degrade_lowers_auc(scored: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, strong, _ = scored
    assert auc(y, degrade(strong)) < auc(y, strong) - 0.1


@pytest.mark.parametrize(
    ("comparison", "passed", "reason"),
    [
        (Comparison(0.84, None), True, Reason.NO_CHAMPION),
        (Comparison(0.70, None), False, Reason.BELOW_MIN_AUC),
        (Comparison(0.84, 0.85, -0.01, -0.02, 0.0), True, Reason.PASSED),
        (Comparison(0.86, 0.84, 0.02, 0.01, 0.03), True, Reason.PASSED),
        (Comparison(0.80, 0.85, -0.05, -0.06, -0.04), False, Reason.METRIC_REGRESSION),
        (Comparison(0.60, 0.85, -0.25, -0.27, -0.23), False, Reason.METRIC_REGRESSION),
        (Comparison(0.74, 0.745, -0.005, -0.01, 0.0), False, Reason.BELOW_MIN_AUC),
    ],
    ids=[
        "first-model-no-champion",
        "first-model-too-weak",
        "small-drop-within-tolerance",
        "better-than-champion",
        "regression-beyond-max-drop",
        "big-regression-reported-as-regression",
        "no-regression-but-below-min",
    ],
)
def test_gate(comparison: Comparison, passed: bool, reason: Reason) -> None:
    decision = gate(comparison, GateThresholds(min_auc=0.75, max_auc_drop=0.02))
    assert decision.passed is passed
    assert decision.reason is reason
