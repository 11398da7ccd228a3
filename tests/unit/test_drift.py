"""Drift statistics and the drift summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from claimops_stages.claims import generate_claims
from claimops_stages.drift import DriftThresholds, compare, js_distance, psi


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return generate_claims(30_000, seed=1)


@pytest.mark.parametrize(
    ("shift", "low", "high"),
    [(0.0, 0.0, 0.01), (0.25, 0.05, 0.1), (1.0, 0.6, 1.5)],
    ids=["same-distribution", "quarter-sd-shift", "one-sd-shift"],
)
def test_psi_grows_with_the_shift(shift: float, low: float, high: float) -> None:
    rng = np.random.default_rng(0)
    value = psi(rng.normal(0, 1, 50_000), rng.normal(shift, 1, 50_000))
    assert low <= value <= high


def test_psi_bins_come_from_the_reference() -> None:
    # Values beyond the reference's range land in its outer bins instead of being dropped.
    reference = np.arange(1000, dtype=float)
    assert psi(reference, reference + 5000) > 5


@pytest.mark.parametrize(
    ("p", "q", "expected"),
    [([10, 10], [10, 10], 0.0), ([10, 0], [0, 10], 1.0)],
    ids=["identical", "disjoint"],
)
def test_js_distance_bounds(p: list[int], q: list[int], expected: float) -> None:
    assert js_distance(np.array(p), np.array(q)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("profile", "drifted"),
    [
        ("none", set()),
        ("mild", set()),
        ("severe", {"billed_amount", "allowed_amount", "patient_age", "provider_type", "cpt_bucket"}),
    ],
    ids=["none", "mild-below-thresholds", "severe"],
)
def test_profiles_drift_the_features_they_name(
    reference: pd.DataFrame, profile: str, drifted: set[str]
) -> None:
    report = compare(reference, generate_claims(30_000, seed=2, drift=profile))
    assert set(report.drifted_features) == drifted
    assert "diagnosis_group" not in report.drifted_features
    if drifted:
        assert report.summary().startswith("drift in ")
        assert "billed_amount (PSI" in report.summary()
    else:
        assert report.summary().startswith("no drift")


def test_mild_drift_measures_more_than_none(reference: pd.DataFrame) -> None:
    none = compare(reference, generate_claims(30_000, seed=2))
    mild = compare(reference, generate_claims(30_000, seed=2, drift="mild"))
    assert mild.max_psi > 3 * none.max_psi


def test_thresholds_are_configurable(reference: pd.DataFrame) -> None:
    mild = generate_claims(30_000, seed=2, drift="mild")
    strict = compare(reference, mild, DriftThresholds(max_psi=0.005, max_ks=1.0, max_js=1.0))
    assert "patient_age" in strict.drifted_features
    data = strict.to_dict()
    assert data["thresholds"]["max_psi"] == 0.005
    assert data["drifted_features"] == strict.drifted_features
