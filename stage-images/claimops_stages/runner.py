"""Runs one stage: MLflow run around it, its log saved as an artifact, the result written to
the termination-message path, and an exit code (0 passed, 1 failed).
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from claimops_stages import tracking
from claimops_stages.contract import (
    FailureMode,
    Reason,
    ResultStatus,
    StageInputs,
    StageResult,
    cli_stages,
)
from claimops_stages.contract import stage as stage_row

log = logging.getLogger("claimops.stages")


def _capture_logs() -> tuple[io.StringIO, list[logging.Handler]]:
    """Log to stdout (the pod log) and to a buffer (the MLflow artifact)."""
    buffer = io.StringIO()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout), logging.StreamHandler(buffer)]
    for handler in handlers:
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return buffer, handlers


def _failed(
    stage: str, reason: Reason | str, message: str, metrics: dict[str, float] | None = None
) -> StageResult:
    return StageResult(stage, ResultStatus.FAILED, str(reason), message, metrics or {})


def _ensure_experiment(name: str) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(mlflow.create_experiment(name))
    except mlflow.exceptions.MlflowException:
        # Two stages created it at the same time: the other one won.
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _run_in_mlflow(stage: str, inputs: StageInputs, uri: str, buffer: io.StringIO) -> StageResult:
    import mlflow
    from mlflow.tracking import MlflowClient

    from claimops_stages.stages import StageContext, StageFailure, stage_function

    mlflow.set_tracking_uri(uri)
    experiment_id = _ensure_experiment(inputs.model_name)
    tags = {
        "pipeline_run": inputs.run,
        "stage": stage,
        "phase": stage_row(stage).phase.value,
        "commit_sha": inputs.commit_sha,
        "dataset_window": inputs.window,
        "seed": str(inputs.seed),
        "failure_injection": ",".join(inputs.failures),
    }
    run = mlflow.start_run(experiment_id=experiment_id, run_name=f"{inputs.run}-{stage}", tags=tags)
    status = "FAILED"
    try:
        with tempfile.TemporaryDirectory(prefix=f"claimops-{stage}-") as workdir:
            ctx = StageContext(
                stage, MlflowClient(uri), experiment_id, run.info.run_id, Path(workdir), log, tags
            )
            try:
                result = stage_function(stage)(inputs, ctx)
            except StageFailure as failure:
                result = _failed(stage, failure.reason, failure.message, failure.metrics)
            except Exception as exc:
                if tracking.is_connection_error(exc):
                    raise
                log.exception("stage %s raised", stage)
                reason = stage_row(stage).crash_reason
                result = _failed(stage, reason, f"{type(exc).__name__}: {exc}")
        result.mlflow_run_id = run.info.run_id
        result.outputs.setdefault("experiment_id", experiment_id)
        mlflow.set_tags({"result_status": result.status.value, "result_reason": result.reason})
        log.info("%s %s: %s", stage, result.status.value, result.message)
        mlflow.log_text(buffer.getvalue(), f"logs/{stage}.log")
        status = "FINISHED" if result.passed else "FAILED"
        return result
    finally:
        mlflow.end_run(status=status)


def run_stage(stage: str, inputs: StageInputs) -> StageResult:
    """Run `stage`; never raises: every outcome becomes a StageResult."""
    buffer, handlers = _capture_logs()
    started = time.monotonic()
    try:
        tracking.configure_client()
        uri, patience = tracking.tracking_uri(), tracking.PROBE_PATIENCE_SECONDS
        if FailureMode.MLFLOW_CONNECTION in inputs.failures:
            uri, patience = tracking.unreachable_uri(), tracking.INJECTED_PATIENCE_SECONDS
            log.warning("failure injection MLflowConnection: tracking URI replaced by %s", uri)
        log.info("stage %s of pipeline run %s (commit %s)", stage, inputs.run, inputs.commit_sha)
        try:
            tracking.probe(uri, patience)
            result = _run_in_mlflow(stage, inputs, uri, buffer)
        except Exception as exc:
            if not tracking.is_connection_error(exc):
                log.exception("stage %s failed outside its MLflow run", stage)
                return _failed(stage, Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            log.error("MLflow unavailable: %s", exc)
            return _failed(stage, Reason.MLFLOW_UNAVAILABLE, tracking.unavailable_message(exc))
        result.metrics.setdefault("stage_seconds", round(time.monotonic() - started, 3))
        return result
    finally:
        for handler in handlers:
            log.removeHandler(handler)


def build_parser() -> argparse.ArgumentParser:
    """`python -m claimops_stages <stage> --flag value ...`: the stages are the contract's."""
    parser = argparse.ArgumentParser(prog="python -m claimops_stages", description=__doc__)
    parser.add_argument("stage", choices=sorted(s.name for s in cli_stages()))
    StageInputs.add_arguments(parser)
    return parser


def _exit_on_sigterm(signum: int, _: object) -> None:
    # The stage runs as PID 1 of its container, where SIGTERM's default action is ignored: a
    # deleted or evicted pod would hold its slot for the whole grace period. SystemExit lets
    # `finally` blocks end the MLflow run as FAILED.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    ns = build_parser().parse_args(argv)
    inputs = StageInputs.from_namespace(ns)
    result = run_stage(ns.stage, inputs)
    try:
        result.write()
    except OSError as exc:  # outside a pod there may be no /dev/termination-log
        log.warning("could not write the termination message: %s", exc)
    print(result.to_json(), flush=True)
    return 0 if result.passed else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
