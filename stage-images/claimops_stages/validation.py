"""Data validation: an explicit claims schema and a quality report.

Schema problems (a missing column, a wrong dtype) mean the data cannot be used at all and end
with ``SchemaValidationFailed``; quality problems (out-of-range values, unknown categories,
too many nulls, allowed > billed, too few rows) end with ``DataQualityFailed``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from claimops_stages.claims import CATEGORIES, MAX_AGE, MIN_AGE, parse_window
from claimops_stages.contract import Reason


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    #: "int", "float", "category" or "date".
    kind: str
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    max_null_rate: float = 0.0


@dataclass(frozen=True)
class Schema:
    columns: tuple[ColumnSpec, ...]
    min_rows: int = 1000
    #: Rows whose allowed amount exceeds the billed amount, as a fraction of all rows.
    max_allowed_over_billed_rate: float = 0.0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def claims_schema(window: str | None = None, min_rows: int = 1000) -> Schema:
    """The claims schema; with a window, claim dates must fall inside it."""
    start, end = parse_window(window) if window else (None, None)
    date_min = float(np.datetime64(start.isoformat(), "D").astype(np.int64)) if start else None
    date_max = float(np.datetime64(end.isoformat(), "D").astype(np.int64)) if end else None
    return Schema(
        columns=(
            ColumnSpec("claim_id", "int", min=0),
            ColumnSpec("claim_date", "date", min=date_min, max=date_max),
            ColumnSpec("cpt_bucket", "category", categories=CATEGORIES["cpt_bucket"]),
            ColumnSpec("provider_type", "category", categories=CATEGORIES["provider_type"]),
            ColumnSpec("billed_amount", "float", min=0.01, max=5_000_000),
            ColumnSpec("allowed_amount", "float", min=0.0, max=5_000_000),
            ColumnSpec("diagnosis_group", "category", categories=CATEGORIES["diagnosis_group"]),
            ColumnSpec("patient_age", "int", min=MIN_AGE, max=MAX_AGE),
            ColumnSpec("settlement", "category", categories=CATEGORIES["settlement"]),
        ),
        min_rows=min_rows,
    )


@dataclass
class Check:
    name: str
    column: str | None
    passed: bool
    detail: str
    #: SchemaValidationFailed or DataQualityFailed when it fails.
    severity: str = Reason.DATA_QUALITY_FAILED.value


@dataclass
class ValidationReport:
    rows: int
    checks: list[Check] = field(default_factory=list)
    #: Per-column profile: null rate, min/max/mean or category shares.
    profile: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def missing_columns(self) -> list[str]:
        return [c.column for c in self.failures if c.name == "column_present" and c.column]

    @property
    def reason(self) -> Reason:
        if self.passed:
            return Reason.PASSED
        if any(c.severity == Reason.SCHEMA_VALIDATION_FAILED for c in self.failures):
            return Reason.SCHEMA_VALIDATION_FAILED
        return Reason.DATA_QUALITY_FAILED

    def summary(self) -> str:
        if self.passed:
            return f"{self.rows} rows passed {len(self.checks)} checks"
        return "; ".join(c.detail for c in self.failures[:5])

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "passed": self.passed,
            "reason": self.reason.value,
            "checks": [asdict(c) for c in self.checks],
            "profile": self.profile,
        }


def _kind_matches(series: pd.Series, kind: str) -> bool:
    dtype = series.dtype
    if kind == "int":
        return pd.api.types.is_integer_dtype(dtype)
    if kind == "float":
        return pd.api.types.is_float_dtype(dtype) or pd.api.types.is_integer_dtype(dtype)
    if kind == "date":
        return pd.api.types.is_datetime64_any_dtype(dtype)
    return isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype)


def _profile(series: pd.Series, spec: ColumnSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"null_rate": round(float(series.isna().mean()), 6) if len(series) else 0.0}
    if spec.kind == "category":
        shares = series.value_counts(normalize=True, sort=False)
        out["shares"] = {str(k): round(float(v), 4) for k, v in shares.items()}
    elif spec.kind == "date":
        out["min"], out["max"] = str(series.min()), str(series.max())
    else:
        out.update(min=float(series.min()), max=float(series.max()), mean=round(float(series.mean()), 4))
    return out


def _check_column(series: pd.Series, spec: ColumnSpec) -> list[Check]:
    checks: list[Check] = []
    null_rate = float(series.isna().mean()) if len(series) else 0.0
    checks.append(
        Check(
            "null_rate",
            spec.name,
            null_rate <= spec.max_null_rate,
            f"{spec.name}: null rate {null_rate:.4f} (max {spec.max_null_rate})",
        )
    )
    present = series.dropna()
    if spec.kind == "category":
        unknown = sorted(set(present.astype(str).unique()) - set(spec.categories))
        checks.append(
            Check(
                "categories",
                spec.name,
                not unknown,
                f"{spec.name}: unknown categories {unknown[:5]}"
                if unknown
                else f"{spec.name}: categories ok",
            )
        )
        return checks
    values = present.to_numpy()
    if spec.kind == "date":
        values = values.astype("datetime64[D]").astype(np.int64)
    if spec.min is not None:
        below = int((values < spec.min).sum())
        checks.append(Check("min", spec.name, below == 0, f"{spec.name}: {below} values below {spec.min:g}"))
    if spec.max is not None:
        above = int((values > spec.max).sum())
        checks.append(Check("max", spec.name, above == 0, f"{spec.name}: {above} values above {spec.max:g}"))
    return checks


def validate(claims: pd.DataFrame, schema: Schema) -> ValidationReport:
    """Check `claims` against `schema`; never raises on bad data, reports it."""
    report = ValidationReport(rows=len(claims))
    schema_error = Reason.SCHEMA_VALIDATION_FAILED.value
    for spec in schema.columns:
        if spec.name not in claims.columns:
            report.checks.append(
                Check("column_present", spec.name, False, f"missing column '{spec.name}'", schema_error)
            )
            continue
        series = claims[spec.name]
        if not _kind_matches(series, spec.kind):
            report.checks.append(
                Check(
                    "dtype",
                    spec.name,
                    False,
                    f"{spec.name}: dtype {series.dtype} is not {spec.kind}",
                    schema_error,
                )
            )
            continue
        report.checks.append(Check("dtype", spec.name, True, f"{spec.name}: {series.dtype}", schema_error))
        report.checks.extend(_check_column(series, spec))
        report.profile[spec.name] = _profile(series, spec)

    report.checks.append(
        Check(
            "row_count", None, len(claims) >= schema.min_rows, f"{len(claims)} rows (min {schema.min_rows})"
        )
    )
    if {"billed_amount", "allowed_amount"} <= set(claims.columns):
        over = int((claims["allowed_amount"] > claims["billed_amount"]).sum())
        rate = over / max(len(claims), 1)
        report.checks.append(
            Check(
                "allowed_le_billed",
                "allowed_amount",
                rate <= schema.max_allowed_over_billed_rate,
                f"{over} claims with allowed_amount > billed_amount",
            )
        )
    return report
