"""Benchmarks of the ML stages' hot paths, each printed as the median of several runs.

    python tests/bench/bench_stages.py [--quick]

Targets (2 cores): claims >= 2M rows/s with all columns; full-train on 100k rows <= 20 s;
the SHAP step <= 15 s explaining >= 500 rows; drift over 100k rows <= 200 ms; evaluate with
bootstrap <= 10 s; an unreachable MLflow reported within 30 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from claimops_stages import drift, evaluation
from claimops_stages.claims import generate_claims, labels
from claimops_stages.contract import StageInputs
from claimops_stages.runner import run_stage
from claimops_stages.training import (
    SHAP_ROWS,
    SHAP_TREES,
    TrainingConfig,
    approval_probability,
    model_frame,
    plot_shap_summary,
    shap_summary,
    train,
)


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, list[float], Any]:
    """Median seconds over `runs` calls, all timings, and the last return value."""
    times, value = [], None
    for _ in range(runs):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, value


def report(name: str, value: str, target: str, times: list[float]) -> None:
    runs = ", ".join(f"{t:.3f}" for t in times)
    print(f"{name:<38} {value:>16}   target {target:<14} (runs, s: {runs})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    reps = 2 if args.quick else 5
    heavy = 1 if args.quick else 3
    defaults = StageInputs()
    print(f"claimops stage benchmarks (medians; {reps} runs light, {heavy} runs heavy)")

    rows = 1_000_000
    generate_claims(10_000, seed=0)  # warm-up: imports and first-call costs
    median, times, _ = timed(lambda: generate_claims(rows, seed=1), reps)
    report("claims generated (all columns)", f"{rows / median / 1e6:.2f} M rows/s", ">= 2 M/s", times)

    claims = generate_claims(100_000, seed=1)
    config = TrainingConfig(n_estimators=defaults.n_estimators, max_depth=defaults.max_depth, seed=1)
    median, times, outcome = timed(lambda: train(claims, config), heavy)
    report(
        f"full-train 100k ({config.n_estimators} trees, depth {config.max_depth})",
        f"{median:.2f} s",
        "<= 20 s",
        times,
    )
    print(f"{'':<38} holdout AUC {outcome.metrics['auc_roc']:.4f}")

    with tempfile.TemporaryDirectory() as tmp:

        def shap_step() -> Any:
            summary = shap_summary(outcome.pipeline, outcome.x_test, rows=SHAP_ROWS, trees=SHAP_TREES)
            plot_shap_summary(summary, Path(tmp) / "shap.png")
            return summary

        median, times, summary = timed(shap_step, heavy)
    report(f"SHAP step ({summary.rows} rows, {summary.trees} trees)", f"{median:.2f} s", "<= 15 s", times)
    print(f"{'':<38} method: {summary.method}")

    reference = generate_claims(100_000, seed=1)
    current = generate_claims(100_000, seed=2, drift="severe")
    drift.compare(reference, current)  # warm-up
    median, times, result = timed(lambda: drift.compare(reference, current), reps * 2)
    report("drift 100k vs 100k (6 features)", f"{median * 1000:.0f} ms", "<= 200 ms", times)
    print(f"{'':<38} {result.summary()}")

    champion = train(generate_claims(100_000, seed=2), TrainingConfig(seed=2)).pipeline
    holdout = generate_claims(evaluation.HOLDOUT_ROWS, seed=1 + evaluation.HOLDOUT_SEED_OFFSET)
    x, y = model_frame(holdout), labels(holdout)

    def evaluate() -> evaluation.GateDecision:
        comparison = evaluation.compare(
            y, approval_probability(outcome.pipeline, x), approval_probability(champion, x), seed=1
        )
        return evaluation.gate(comparison, evaluation.GateThresholds())

    median, times, decision = timed(evaluate, heavy)
    report(
        f"evaluate ({len(holdout) // 1000}k holdout, {evaluation.BOOTSTRAP_SAMPLES} boots)",
        f"{median:.2f} s",
        "<= 10 s",
        times,
    )
    print(f"{'':<38} {decision.reason}: {decision.message}")

    unreachable = StageInputs(rows=1000, failures=["MLflowConnection"])
    with contextlib.redirect_stdout(io.StringIO()):  # the stage's own log lines
        median, times, failed = timed(lambda: run_stage("full-train", unreachable), 3)
    report("MLflowConnection reported", f"{median:.2f} s", "<= 30 s", times)
    print(f"{'':<38} reason {failed.reason}")


if __name__ == "__main__":
    main()
