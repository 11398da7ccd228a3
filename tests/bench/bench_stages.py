"""Benchmarks of the ML stages' hot paths, each printed as the median of several runs.

    python tests/bench/bench_stages.py [--quick]

Targets (2 cores): claims >= 2M rows/s with all columns; full-train on 100k rows <= 20 s;
the SHAP step <= 15 s explaining >= 500 rows; drift over 100k rows <= 200 ms; evaluate with
bootstrap <= 10 s; an unreachable MLflow reported within 30 s.

"full-train" is the stage as its Job runs it: `python -m claimops_stages full-train` in a fresh
process against a real `mlflow server` (tests/harness/mlflow_server.py), timed from process
start to exit: imports, data, training, SHAP, the model's serialisation and upload through the
server's artifact proxy, and its registration. `train()` alone (fit and holdout metrics) is
printed under its own label.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "stage-images"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from claimops_stages import drift, evaluation  # noqa: E402
from claimops_stages.claims import generate_claims, labels  # noqa: E402
from claimops_stages.contract import StageInputs  # noqa: E402
from claimops_stages.runner import run_stage  # noqa: E402
from claimops_stages.training import (  # noqa: E402
    SHAP_ROWS,
    SHAP_TREES,
    TrainingConfig,
    approval_probability,
    model_frame,
    plot_shap_summary,
    shap_summary,
    train,
)
from tests.harness.mlflow_server import running_mlflow  # noqa: E402


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


class BenchAborted(RuntimeError):
    """A stage did not pass: its time would not be the time of the work it stands for."""


def stage_job(stage: str, inputs: StageInputs, tracking_uri: str, workdir: Path) -> dict[str, Any]:
    """Run `stage` as its Job does (`python -m claimops_stages <stage> <args>`, a new process)
    and return the result it wrote to its termination-message path."""
    message = workdir / f"{inputs.run}-termination-log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "CLAIMOPS_TERMINATION_MESSAGE_PATH": str(message),
        "PYTHONPATH": os.pathsep.join([str(REPO / "stage-images"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "claimops_stages", stage, *inputs.to_args()],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not message.exists():
        raise BenchAborted(f"{stage} exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")
    result: dict[str, Any] = json.loads(message.read_text())
    return result


def full_train_stage(reps: int) -> None:
    """The full-train stage end to end, against a real `mlflow server`."""
    with tempfile.TemporaryDirectory(prefix="bench-full-train-") as tmp:
        workdir = Path(tmp)
        with running_mlflow(f"sqlite:///{workdir}/mlflow.db", str(workdir / "artifacts"), workdir) as server:
            defaults = StageInputs()
            results: list[dict[str, Any]] = []

            def one_run() -> dict[str, Any]:
                inputs = StageInputs(run=f"bench-{len(results) + 1}", model_name="claim-settlement-bench",
                                     rows=100_000, seed=1)  # fmt: skip
                results.append(stage_job("full-train", inputs, server.url, workdir))
                return results[-1]

            median, times, result = timed(one_run, reps)
    report(
        f"full-train stage 100k ({defaults.n_estimators} trees, depth {defaults.max_depth})",
        f"{median:.2f} s",
        "<= 20 s",
        times,
    )
    inside = ", ".join(f"{r['metrics'].get('stage_seconds', float('nan')):.2f}" for r in results)
    print(
        f"{'':<38} `python -m claimops_stages full-train` vs `mlflow server`: {result['reason']}, "
        f"model version {result.get('model_version')}, AUC {result['metrics']['auc_roc']:.4f}; "
        f"stage_seconds (after imports) {inside}"
    )


def main() -> int:
    try:
        bench()
    except BenchAborted as exc:
        print(f"bench_stages ABORTED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def bench() -> None:
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
    full_train_stage(heavy)
    median, times, outcome = timed(lambda: train(claims, config), heavy)
    report(
        f"train() only 100k ({config.n_estimators} trees, depth {config.max_depth})",
        f"{median:.2f} s",
        "(no target)",
        times,
    )
    print(f"{'':<38} fit + holdout metrics in-process; holdout AUC {outcome.metrics['auc_roc']:.4f}")

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
    raise SystemExit(main())
