"""Drift between a reference sample and a current sample of claims.

Numeric features: the population stability index (PSI, bins from the reference's deciles)
and the two-sample Kolmogorov-Smirnov statistic. Categorical features: the Jensen-Shannon
distance between the category shares, with a chi-square test for the record (on 100k rows
chi-square flags differences too small to matter, so it does not decide on its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from claimops_stages.claims import CATEGORICAL_FEATURES, NUMERIC_FEATURES

#: Floor for empty bins so log(0) never happens (the usual PSI convention).
_EPS = 1e-4


@dataclass(frozen=True)
class DriftThresholds:
    #: PSI above this is drift (0.1-0.2 is commonly read as "moderate", > 0.2 as "major").
    max_psi: float = 0.2
    #: KS statistic (largest CDF gap) above this is drift.
    max_ks: float = 0.1
    #: Jensen-Shannon distance (base 2, 0..1) above this is drift.
    max_js: float = 0.1
    bins: int = 10


@dataclass
class FeatureDrift:
    feature: str
    kind: str  # "numeric" or "categorical"
    drifted: bool
    psi: float | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    js_distance: float | None = None
    chi2_pvalue: float | None = None


@dataclass
class DriftReport:
    reference_rows: int
    current_rows: int
    thresholds: DriftThresholds
    features: list[FeatureDrift] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_features)

    @property
    def max_psi(self) -> float:
        return max((f.psi for f in self.features if f.psi is not None), default=0.0)

    def summary(self) -> str:
        if not self.drifted:
            return f"no drift in {len(self.features)} features (max PSI {self.max_psi:.3f})"
        parts = []
        for f in self.features:
            if f.drifted:
                measure = f"PSI {f.psi:.3f}" if f.psi is not None else f"JS {f.js_distance:.3f}"
                parts.append(f"{f.feature} ({measure})")
        return "drift in " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "thresholds": asdict(self.thresholds),
            "drifted_features": self.drifted_features,
            "summary": self.summary(),
            "features": [asdict(f) for f in self.features],
        }


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index with bin edges at the reference's quantiles."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    # Interior edges only: values beyond the reference's range fall into the outer bins.
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1)
    cur_share = np.bincount(np.searchsorted(edges, current, side="right"), minlength=edges.size + 1)
    ref_p = np.maximum(ref_share / max(reference.size, 1), _EPS)
    cur_p = np.maximum(cur_share / max(current.size, 1), _EPS)
    return float(np.sum((cur_p - ref_p) * np.log(cur_p / ref_p)))


def _category_counts(series: pd.Series, categories: Sequence[str]) -> np.ndarray:
    if isinstance(series.dtype, pd.CategoricalDtype) and list(series.cat.categories) == list(categories):
        return np.bincount(
            series.cat.codes.to_numpy()[series.cat.codes.to_numpy() >= 0], minlength=len(categories)
        )
    counts = series.astype(str).value_counts()
    return np.array([int(counts.get(c, 0)) for c in categories])


def js_distance(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2: 0 identical, 1 disjoint) between two count vectors."""
    p = reference_counts / max(reference_counts.sum(), 1)
    q = current_counts / max(current_counts.sum(), 1)
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return float(np.sqrt(max((kl(p, m) + kl(q, m)) / 2, 0.0)))


def numeric_drift(name: str, reference: np.ndarray, current: np.ndarray, th: DriftThresholds) -> FeatureDrift:
    value = psi(reference, current, th.bins)
    ks = stats.ks_2samp(reference, current, method="asymp")
    return FeatureDrift(
        feature=name,
        kind="numeric",
        drifted=value > th.max_psi or float(ks.statistic) > th.max_ks,
        psi=round(value, 6),
        ks_statistic=round(float(ks.statistic), 6),
        ks_pvalue=float(ks.pvalue),
    )


def categorical_drift(
    name: str, reference: pd.Series, current: pd.Series, categories: Sequence[str], th: DriftThresholds
) -> FeatureDrift:
    ref_counts = _category_counts(reference, categories)
    cur_counts = _category_counts(current, categories)
    distance = js_distance(ref_counts, cur_counts)
    seen = (ref_counts + cur_counts) > 0
    chi2_p = 1.0
    if seen.sum() > 1 and ref_counts.sum() and cur_counts.sum():
        chi2_p = float(stats.chi2_contingency(np.vstack([ref_counts[seen], cur_counts[seen]]))[1])
    return FeatureDrift(
        feature=name,
        kind="categorical",
        drifted=distance > th.max_js,
        js_distance=round(distance, 6),
        chi2_pvalue=chi2_p,
    )


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    thresholds: DriftThresholds | None = None,
    numeric: Sequence[str] = NUMERIC_FEATURES,
    categorical: Sequence[str] = CATEGORICAL_FEATURES,
) -> DriftReport:
    """Drift of each named feature of `current` against `reference`."""
    from claimops_stages.claims import CATEGORIES

    th = thresholds or DriftThresholds()
    report = DriftReport(len(reference), len(current), th)
    for name in numeric:
        ref = reference[name].to_numpy(dtype=float)
        cur = current[name].to_numpy(dtype=float)
        report.features.append(numeric_drift(name, ref[~np.isnan(ref)], cur[~np.isnan(cur)], th))
    for name in categorical:
        cats = CATEGORIES.get(name) or sorted(
            set(reference[name].astype(str)) | set(current[name].astype(str))
        )
        report.features.append(categorical_drift(name, reference[name], current[name], cats, th))
    return report
