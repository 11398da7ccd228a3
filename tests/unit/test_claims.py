"""The synthetic claims generator: shape, domain, reproducibility, drift profiles."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pandas as pd
import pytest

from claimops_stages.claims import (
    CATEGORIES,
    COLUMNS,
    CPT_BUCKETS,
    DIAGNOSIS_GROUPS,
    DRIFT_PROFILES,
    PROVIDER_TYPES,
    bayes_auc_reference,
    claim_stream,
    generate_claims,
    labels,
    parse_window,
)


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return generate_claims(50_000, seed=3)


def test_domain_matches_the_seed() -> None:
    assert len(CPT_BUCKETS) == 10
    assert {"Evaluation", "Surgery", "Radiology"} <= set(CPT_BUCKETS)
    assert PROVIDER_TYPES == ("Hospital", "Physician Office", "Clinic", "Urgent Care", "Telehealth")
    assert len(DIAGNOSIS_GROUPS) == 20
    assert len(set(DIAGNOSIS_GROUPS)) == 20


def test_columns_and_every_category_appear(claims: pd.DataFrame) -> None:
    assert tuple(claims.columns) == COLUMNS
    for column, values in CATEGORIES.items():
        assert set(claims[column].astype(str).unique()) == set(values), column


def test_amounts_are_skewed_and_allowed_never_exceeds_billed(claims: pd.DataFrame) -> None:
    billed, allowed = claims["billed_amount"], claims["allowed_amount"]
    assert (allowed <= billed).all()
    assert (allowed > 0).all()
    # Right-skewed: mean well above median, and a long tail.
    assert billed.mean() > 1.5 * billed.median()
    assert billed.quantile(0.99) > 10 * billed.median()


def test_ages_and_dates_stay_in_range(claims: pd.DataFrame) -> None:
    assert claims["patient_age"].between(0, 100).all()
    start, end = parse_window("2026-01-01/2026-03-31")
    dates = claims["claim_date"].dt.date
    assert dates.min() == start
    assert dates.max() == end


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [((1000, 5), (1000, 5), True), ((1000, 5), (1000, 6), False)],
    ids=["same-seed-same-claims", "other-seed-other-claims"],
)
def test_reproducible_from_the_seed(first: tuple[int, int], second: tuple[int, int], same: bool) -> None:
    a = generate_claims(first[0], seed=first[1])
    b = generate_claims(second[0], seed=second[1])
    assert a.equals(b) is same


def test_outcome_is_learnable_but_noisy(claims: pd.DataFrame) -> None:
    # The true rule's AUC: the ceiling for any model. Far from 0.5 (learnable), far from 1 (noisy).
    assert 0.82 < bayes_auc_reference(claims) < 0.93
    assert 0.5 < labels(claims).mean() < 0.8


@pytest.mark.parametrize(
    ("feature", "statistic"),
    [
        ("billed_amount", lambda df: np.log(df["billed_amount"]).mean()),
        ("patient_age", lambda df: df["patient_age"].mean()),
        ("provider_type", lambda df: (df["provider_type"] == "Telehealth").mean()),
    ],
    ids=["billed", "age", "telehealth-share"],
)
def test_drift_profiles_shift_named_features_in_order(feature: str, statistic: object) -> None:
    stat = statistic  # a callable frame -> float
    values = [stat(generate_claims(20_000, seed=9, drift=p)) for p in ("none", "mild", "severe")]  # type: ignore[operator]
    assert values[0] < values[1] < values[2], values
    assert feature in DRIFT_PROFILES["severe"].shifted_features


def test_no_drift_profile_shifts_nothing() -> None:
    assert DRIFT_PROFILES["none"].shifted_features == ()


@pytest.mark.parametrize(
    "window",
    ["2026-03-01", "2026-03-31/2026-01-01", "yesterday/today"],
    ids=["no-end", "reversed", "not-dates"],
)
def test_bad_window_is_rejected(window: str) -> None:
    with pytest.raises(ValueError, match="window"):
        generate_claims(10, window=window)


def test_stream_is_replayable_with_continuing_ids() -> None:
    first = list(islice(claim_stream(100, seed=4, drift="mild"), 3))
    again = list(islice(claim_stream(100, seed=4, drift="mild"), 3))
    assert all(a.equals(b) for a, b in zip(first, again, strict=True))
    ids = np.concatenate([batch["claim_id"].to_numpy() for batch in first])
    assert len(np.unique(ids)) == 300
    assert not first[0].drop(columns="claim_id").equals(first[1].drop(columns="claim_id"))
