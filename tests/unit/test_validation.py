"""Data validation: the schema catches what would break training, and names it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from claimops_stages.claims import generate_claims
from claimops_stages.contract import Reason
from claimops_stages.validation import claims_schema, validate

WINDOW = "2026-01-01/2026-03-31"


@pytest.fixture
def claims() -> pd.DataFrame:
    return generate_claims(3000, seed=21, window=WINDOW)


def test_clean_claims_pass_with_a_profile(claims: pd.DataFrame) -> None:
    report = validate(claims, claims_schema(WINDOW, min_rows=3000))
    assert report.passed, report.summary()
    assert report.reason is Reason.PASSED
    assert set(report.profile["provider_type"]["shares"]) == {
        "Hospital",
        "Physician Office",
        "Clinic",
        "Urgent Care",
        "Telehealth",
    }
    assert report.profile["billed_amount"]["null_rate"] == 0


def _set(column: str, index: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def apply(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        if isinstance(df[column].dtype, pd.CategoricalDtype):
            df[column] = df[column].astype(object)
        df.loc[index, column] = value
        return df

    return apply


@pytest.mark.parametrize(
    ("corrupt", "reason", "named"),
    [
        (
            lambda df: df.drop(columns=["allowed_amount"]),
            Reason.SCHEMA_VALIDATION_FAILED,
            "missing column 'allowed_amount'",
        ),
        (
            lambda df: df.drop(columns=["settlement"]),
            Reason.SCHEMA_VALIDATION_FAILED,
            "missing column 'settlement'",
        ),
        (
            lambda df: df.assign(patient_age=df["patient_age"].astype(str)),
            Reason.SCHEMA_VALIDATION_FAILED,
            "patient_age: dtype",
        ),
        (_set("patient_age", 5, 130), Reason.DATA_QUALITY_FAILED, "patient_age: 1 values above 100"),
        (_set("billed_amount", 3, np.nan), Reason.DATA_QUALITY_FAILED, "billed_amount: null rate"),
        (_set("cpt_bucket", 7, "Astrology"), Reason.DATA_QUALITY_FAILED, "unknown categories ['Astrology']"),
        (
            _set("allowed_amount", 9, 10_000_000.0),
            Reason.DATA_QUALITY_FAILED,
            "allowed_amount > billed_amount",
        ),
        (
            _set("claim_date", 2, pd.Timestamp("2025-12-31")),
            Reason.DATA_QUALITY_FAILED,
            "claim_date: 1 values below",
        ),
        (lambda df: df.head(100), Reason.DATA_QUALITY_FAILED, "100 rows (min 3000)"),
    ],
    ids=[
        "missing-allowed",
        "missing-target",
        "age-as-text",
        "age-out-of-range",
        "null-billed",
        "unknown-cpt-bucket",
        "allowed-over-billed",
        "date-before-window",
        "too-few-rows",
    ],
)
def test_each_defect_fails_with_its_reason_and_is_named(
    claims: pd.DataFrame, corrupt: Callable[[pd.DataFrame], pd.DataFrame], reason: Reason, named: str
) -> None:
    report = validate(corrupt(claims), claims_schema(WINDOW, min_rows=3000))
    assert not report.passed
    assert report.reason is reason
    assert named in report.summary()


def test_report_serialises_for_mlflow(claims: pd.DataFrame) -> None:
    data = validate(claims.drop(columns=["patient_age"]), claims_schema()).to_dict()
    assert data["passed"] is False
    assert data["reason"] == "SchemaValidationFailed"
    assert any(c["column"] == "patient_age" and not c["passed"] for c in data["checks"])
