"""Candidate vs champion on the same fresh holdout, with a paired bootstrap interval for the
AUC difference, and the promotion gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from claimops_stages.contract import Reason

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95
#: Fresh holdout claims are drawn with this offset from the run's seed, so they are never
#: rows the candidate was trained on, and both models see the same claims.
HOLDOUT_SEED_OFFSET = 7_919
HOLDOUT_ROWS = 20_000


@dataclass(frozen=True)
class GateThresholds:
    min_auc: float = 0.75
    max_auc_drop: float = 0.02


@dataclass
class Comparison:
    candidate_auc: float
    champion_auc: float | None
    #: candidate - champion, and its paired bootstrap interval.
    delta: float | None = None
    delta_low: float | None = None
    delta_high: float | None = None
    bootstrap_samples: int = 0

    def metrics(self) -> dict[str, float]:
        """Result metrics, named as the evaluate-vs-champion row of contract.STAGES says."""
        named = {
            "candidate_auc": self.candidate_auc,
            "champion_auc": self.champion_auc,
            "auc_delta": self.delta,
            "auc_delta_ci_low": self.delta_low,
            "auc_delta_ci_high": self.delta_high,
        }
        return {key: value for key, value in named.items() if value is not None}


@dataclass
class GateDecision:
    passed: bool
    reason: Reason
    message: str


def _weighted_auc(
    order: np.ndarray, starts: np.ndarray, y_sorted: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """AUC for each row of `weights` (bootstrap multiplicities), ties counted as one half.

    `order` sorts the scores ascending and `starts` marks where each run of tied scores
    begins, so the rank statistic becomes sums over tie groups.
    """
    w = weights[:, order]
    pos = np.add.reduceat(w * y_sorted, starts, axis=1)
    neg = np.add.reduceat(w * (1 - y_sorted), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    numerator = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    denominator = pos.sum(axis=1) * neg.sum(axis=1)
    return np.divide(numerator, denominator, out=np.full(len(w), np.nan), where=denominator > 0)


def _tie_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    return order, starts


def auc(y: np.ndarray, scores: np.ndarray) -> float:
    order, starts = _tie_groups(np.asarray(scores, dtype=float))
    return float(_weighted_auc(order, starts, np.asarray(y, dtype=float)[order], np.ones((1, len(y))))[0])


def paired_bootstrap(
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    chunk: int = 50,
) -> tuple[float, float, float]:
    """AUC(candidate) - AUC(champion) and its percentile interval.

    Paired: each bootstrap sample resamples claims once and scores both models on that same
    resample, so the interval reflects the difference, not two independent noises.
    """
    y = np.asarray(y, dtype=float)
    n = len(y)
    rng = np.random.default_rng(seed)
    cand_order, cand_starts = _tie_groups(np.asarray(candidate, dtype=float))
    champ_order, champ_starts = _tie_groups(np.asarray(champion, dtype=float))
    deltas = np.empty(samples)
    for first in range(0, samples, chunk):
        rows = min(chunk, samples - first)
        # Multiplicity of each claim in each resample (bincount of uniform draws).
        draws = rng.integers(0, n, (rows, n)) + (np.arange(rows) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float32)
        deltas[first : first + rows] = _weighted_auc(
            cand_order, cand_starts, y[cand_order], weights
        ) - _weighted_auc(champ_order, champ_starts, y[champ_order], weights)
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(deltas, [alpha, 1 - alpha])
    point = auc(y, candidate) - auc(y, champion)
    return point, float(low), float(high)


def compare(
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray | None,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> Comparison:
    candidate_auc = auc(y, candidate)
    if champion is None:
        return Comparison(candidate_auc=candidate_auc, champion_auc=None)
    delta, low, high = paired_bootstrap(y, candidate, champion, samples=samples, seed=seed)
    return Comparison(
        candidate_auc=candidate_auc,
        champion_auc=auc(y, champion),
        delta=delta,
        delta_low=low,
        delta_high=high,
        bootstrap_samples=samples,
    )


def gate(comparison: Comparison, thresholds: GateThresholds) -> GateDecision:
    """Pass when the candidate clears the minimum AUC and, if a champion exists, does not
    lose more than `max_auc_drop` AUC against it (point estimate; the interval is reported)."""
    c = comparison
    if c.champion_auc is not None and c.delta is not None:
        interval = f"95% CI [{c.delta_low:+.4f}, {c.delta_high:+.4f}]"
        versus = f"candidate AUC {c.candidate_auc:.4f} vs champion {c.champion_auc:.4f}: delta {c.delta:+.4f} ({interval})"
        if c.delta < -thresholds.max_auc_drop:
            return GateDecision(
                False, Reason.METRIC_REGRESSION, f"{versus} is below -{thresholds.max_auc_drop}"
            )
    if c.candidate_auc < thresholds.min_auc:
        return GateDecision(
            False,
            Reason.BELOW_MIN_AUC,
            f"candidate AUC {c.candidate_auc:.4f} is below the minimum {thresholds.min_auc}",
        )
    if c.champion_auc is None:
        return GateDecision(
            True,
            Reason.NO_CHAMPION,
            f"no champion yet; candidate AUC {c.candidate_auc:.4f} >= {thresholds.min_auc}",
        )
    return GateDecision(True, Reason.PASSED, versus)


def degrade(scores: np.ndarray, seed: int = 0, keep: float = 0.25) -> np.ndarray:
    """Failure injection MetricRegression: blend the candidate's scores with noise, the way a
    broken feature pipeline would, so its AUC falls well below the champion's."""
    rng = np.random.default_rng(seed)
    return keep * np.asarray(scores, dtype=float) + (1 - keep) * rng.random(len(scores))
