"""One function per pipeline stage: what the stage's Job does.

Each function takes the stage's inputs and a context (the open MLflow run, a logger, a
scratch directory) and returns the StageResult, or raises StageFailure with a reason. The UI
shows these functions' source as "the step's code", so they read top to bottom; the runner
(`runner.py`) owns the MLflow run, the log artifact and the termination message.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import mlflow
import mlflow.artifacts
import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from claimops_stages import evaluation, registry, release, selfcheck, shadow, tracking
from claimops_stages.claims import generate_claims, labels
from claimops_stages.contract import (
    FailureMode,
    Phase,
    Reason,
    Record,
    ResultStatus,
    StageInputs,
    StageResult,
    phase_stages,
)
from claimops_stages.contract import stage as stage_row
from claimops_stages.drift import DriftThresholds, compare
from claimops_stages.training import (
    SHAP_ROWS,
    SKOPS_TRUSTED_TYPES,
    TrainingConfig,
    TrainingOutcome,
    approval_probability,
    feature_importance,
    model_frame,
    model_requirements,
    plot_feature_importance,
    plot_shap_summary,
    shap_summary,
    train,
)
from claimops_stages.validation import claims_schema, validate

#: The column failure injection SchemaValidation removes before validation.
INJECTED_MISSING_COLUMN = "allowed_amount"
#: quick-train: at most this many trees, explained on fewer rows; it only has to be quick.
QUICK_MAX_TREES = 50
QUICK_SHAP_ROWS = 200
#: quick-train's floor: a sanity check that the model learns at all on a small sample. The
#: run's min-AUC gate belongs to evaluate-vs-champion, on the full model and a fresh holdout.
QUICK_MIN_AUC = 0.6


class StageFailure(Exception):
    """The stage ran and its check failed: reported with a reason, exit code 1."""

    def __init__(self, reason: Reason, message: str, metrics: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metrics = metrics or {}


@dataclass
class StageContext:
    stage: str
    client: MlflowClient
    experiment_id: str
    run_id: str
    workdir: Path
    log: logging.Logger
    #: Tags set on the run (and on a registered version), for reproducibility.
    tags: dict[str, str] = field(default_factory=dict)

    def result(
        self, reason: Reason, message: str, metrics: dict[str, float] | None = None, **kwargs: Any
    ) -> StageResult:
        return StageResult(self.stage, ResultStatus.SUCCEEDED, reason.value, message, metrics or {}, **kwargs)


def training_claims(inputs: StageInputs) -> pd.DataFrame:
    """The run's training data: reproducible from seed and window, never drifted."""
    return generate_claims(inputs.rows, seed=inputs.seed, window=inputs.window)


def ci_tests(inputs: StageInputs, ctx: StageContext) -> StageResult:
    inject = FailureMode.TRAINING_ERROR.value if FailureMode.TRAINING_ERROR in inputs.failures else None
    if inject:
        ctx.log.warning("failure injection %s: the self-checks will train on corrupted labels", inject)
    report = selfcheck.run(inject=inject)
    ctx.log.info("%s", report.output)
    mlflow.log_text(report.output, "ci_tests/selfcheck.txt")
    metrics = {
        "tests": float(report.tests),
        "tests_failed": float(report.failures + report.errors),
        "lint_errors": float(report.lint_errors),
    }
    mlflow.log_metrics(metrics)
    if not report.passed:
        raise StageFailure(Reason.CI_TESTS_FAILED, report.summary(), metrics)
    return ctx.result(Reason.PASSED, report.summary(), metrics)


def data_validation(inputs: StageInputs, ctx: StageContext) -> StageResult:
    claims = training_claims(inputs)
    if FailureMode.SCHEMA_VALIDATION in inputs.failures:
        ctx.log.warning("failure injection SchemaValidation: dropping column %s", INJECTED_MISSING_COLUMN)
        claims = claims.drop(columns=[INJECTED_MISSING_COLUMN])
    report = validate(claims, claims_schema(inputs.window, min_rows=min(inputs.rows, 1000)))
    mlflow.log_dict(report.to_dict(), "data_validation/quality_report.json")
    metrics = {
        "rows": float(report.rows),
        "checks": float(len(report.checks)),
        "checks_failed": float(len(report.failures)),
    }
    if "settlement" in report.profile:
        metrics["approved_share"] = report.profile["settlement"]["shares"].get("Approved", 0.0)
    mlflow.log_metrics(metrics)
    for check in report.failures:
        ctx.log.error("check failed: %s", check.detail)
    if not report.passed:
        raise StageFailure(report.reason, report.summary(), metrics)
    return ctx.result(Reason.PASSED, report.summary(), metrics)


def _log_training(
    outcome: TrainingOutcome, config: TrainingConfig, shap_rows: int, ctx: StageContext
) -> None:
    """Params, metrics, feature importance and the SHAP summary of a fitted model."""
    mlflow.log_params({**config.params(), "train_rows": outcome.train_rows, "test_rows": outcome.test_rows})
    mlflow.log_metrics({**outcome.metrics, "train_seconds": outcome.seconds})
    importance = feature_importance(outcome.pipeline)
    mlflow.log_metrics({f"importance_{k}": v for k, v in importance.items()})
    mlflow.log_artifact(
        str(plot_feature_importance(importance, ctx.workdir / "feature_importance.png")), "plots"
    )
    shap = shap_summary(outcome.pipeline, outcome.x_test, rows=shap_rows, seed=config.seed)
    # The explanation method is a deliberate speed/accuracy choice: record it with the run.
    mlflow.log_params(shap.params())
    mlflow.log_metrics(
        {"shap_seconds": shap.seconds, **{f"shap_mean_abs_{k}": v for k, v in shap.mean_abs().items()}}
    )
    mlflow.log_artifact(str(plot_shap_summary(shap, ctx.workdir / "shap_summary.png")), "plots")
    ctx.log.info(
        "metrics %s; SHAP: %s rows x %s trees in %.1f s", outcome.metrics, shap.rows, shap.trees, shap.seconds
    )


def _log_model(outcome: TrainingOutcome, register_as: str | None) -> Any:
    sample = outcome.x_test.head(100)
    signature = infer_signature(sample, outcome.pipeline.predict(sample))
    return mlflow.sklearn.log_model(
        outcome.pipeline,
        name="model",
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        pip_requirements=model_requirements(),
        signature=signature,
        input_example=outcome.x_test.head(3),
        registered_model_name=register_as,
    )


def quick_train(inputs: StageInputs, ctx: StageContext) -> StageResult:
    claims = training_claims(inputs).sample(frac=inputs.quick_sample_fraction, random_state=inputs.seed)
    config = TrainingConfig(
        n_estimators=min(inputs.n_estimators, QUICK_MAX_TREES), max_depth=inputs.max_depth, seed=inputs.seed
    )
    ctx.log.info("quick-train on a %.0f%% sample: %d claims", inputs.quick_sample_fraction * 100, len(claims))
    outcome = train(claims, config)
    mlflow.set_tag("model_version", f"ci-{inputs.commit_sha[:7]}")
    _log_training(outcome, config, QUICK_SHAP_ROWS, ctx)
    model = _log_model(outcome, register_as=None)
    if outcome.metrics["auc_roc"] < QUICK_MIN_AUC:
        raise StageFailure(
            Reason.TRAINING_FAILED,
            f"quick-train AUC {outcome.metrics['auc_roc']:.4f} < {QUICK_MIN_AUC}",
            outcome.metrics,
        )
    message = f"AUC {outcome.metrics['auc_roc']:.4f} on {outcome.test_rows} held-out claims"
    return ctx.result(Reason.PASSED, message, outcome.metrics, outputs={"model_uri": model.model_uri})


def mlflow_log(inputs: StageInputs, ctx: StageContext) -> StageResult:
    # The CI summary: one run that gathers this pipeline run's CI Job stages before it.
    ci_stages = [s.name for s in phase_stages(Phase.CI) if s.cli and s.record is not Record.CI_SUMMARY]
    runs = ctx.client.search_runs(
        [ctx.experiment_id], filter_string=f"tags.pipeline_run = '{inputs.run}'", max_results=200
    )
    latest: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        if run.data.tags.get("stage") in ci_stages:
            latest[run.data.tags["stage"]] = run
    missing = [s for s in ci_stages if s not in latest]
    if missing:
        raise StageFailure(
            Reason.INVALID_INPUT, f"no MLflow run of {', '.join(missing)} for pipeline run {inputs.run}"
        )
    summary = {
        stage: {
            "run_id": run.info.run_id,
            "status": run.data.tags.get("result_status"),
            "metrics": run.data.metrics,
        }
        for stage, run in latest.items()
    }
    failed = [s for s, info in summary.items() if info["status"] != ResultStatus.SUCCEEDED.value]
    mlflow.log_dict(summary, "ci_summary.json")
    quick = latest["quick-train"].data.metrics
    metrics = {
        f"ci_{k}": quick[k] for k in ("auc_roc", "f1", "accuracy", "precision", "recall") if k in quick
    }
    mlflow.log_metrics(metrics)
    mlflow.log_params(
        {"rows": inputs.rows, "n_estimators": inputs.n_estimators, "max_depth": inputs.max_depth}
    )
    mlflow.set_tags(
        {
            "ci_status": "failed" if failed else "passed",
            "quick_train_run_id": latest["quick-train"].info.run_id,
        }
    )
    if failed:
        raise StageFailure(Reason.CI_TESTS_FAILED, f"CI stages not succeeded: {', '.join(failed)}", metrics)
    return ctx.result(Reason.PASSED, f"CI summary of {len(summary)} stages logged", metrics)


def full_train(inputs: StageInputs, ctx: StageContext) -> StageResult:
    claims = training_claims(inputs)
    config = TrainingConfig(n_estimators=inputs.n_estimators, max_depth=inputs.max_depth, seed=inputs.seed)
    ctx.log.info("full-train on %d claims: %s", len(claims), config.params())
    outcome = train(claims, config)
    if inputs.ci_run_id:
        ctx.tags["ci_run_id"] = inputs.ci_run_id  # links this CD run to its CI summary run
        mlflow.set_tag("ci_run_id", inputs.ci_run_id)
    _log_training(outcome, config, SHAP_ROWS, ctx)
    model = _log_model(outcome, register_as=inputs.model_name)
    version = str(model.registered_model_version)
    mlflow.set_tag("model_version", version)
    for key, value in {
        **ctx.tags,
        "training_run_id": ctx.run_id,
        "auc_roc": f"{outcome.metrics['auc_roc']:.4f}",
    }.items():
        ctx.client.set_model_version_tag(inputs.model_name, version, key, value)
    message = f"registered {inputs.model_name} v{version}; AUC {outcome.metrics['auc_roc']:.4f}"
    return ctx.result(
        Reason.PASSED, message, outcome.metrics, model_version=version, outputs={"model_uri": model.model_uri}
    )


def evaluate_vs_champion(inputs: StageInputs, ctx: StageContext) -> StageResult:
    name = inputs.model_name
    candidate = inputs.candidate_version or registry.latest_version(ctx.client, name)
    if candidate is None:
        raise StageFailure(Reason.INVALID_INPUT, f"model {name} has no registered version to evaluate")
    champion = registry.alias_version(ctx.client, name, registry.CHAMPION)
    # A fresh holdout both models score: never seen in training, same claims for both.
    holdout = generate_claims(
        min(evaluation.HOLDOUT_ROWS, max(inputs.rows, 2000)),
        seed=inputs.seed + evaluation.HOLDOUT_SEED_OFFSET,
        window=inputs.window,
    )
    x, y = model_frame(holdout), labels(holdout)
    candidate_scores = approval_probability(mlflow.sklearn.load_model(f"models:/{name}/{candidate}"), x)
    injected = FailureMode.METRIC_REGRESSION in inputs.failures
    if injected:
        ctx.log.warning("failure injection MetricRegression: degrading the candidate's scores")
        candidate_scores = evaluation.degrade(candidate_scores, seed=inputs.seed)
    champion_scores = None
    if champion is not None:
        champion_scores = approval_probability(
            mlflow.sklearn.load_model(f"models:/{name}@{registry.CHAMPION}"), x
        )
    comparison = evaluation.compare(y, candidate_scores, champion_scores, seed=inputs.seed)
    decision = evaluation.gate(comparison, evaluation.GateThresholds(inputs.min_auc, inputs.max_auc_drop))
    metrics = comparison.metrics()
    mlflow.log_metrics(metrics)
    mlflow.log_params({"holdout_rows": len(holdout), "bootstrap_samples": comparison.bootstrap_samples})
    mlflow.set_tags(
        {"candidate_version": candidate, "champion_version": champion or "", "gate": decision.reason}
    )
    ctx.client.set_model_version_tag(
        name, candidate, registry.TAG_EVALUATION_PASSED, str(decision.passed).lower()
    )
    ctx.client.set_model_version_tag(name, candidate, "evaluation_run_id", ctx.run_id)
    ctx.log.info("gate: %s (%s)", decision.reason, decision.message)
    outputs = {"candidate_version": candidate, "champion_version": champion or ""}
    if not decision.passed:
        # An injected regression always reports MetricRegression, champion or not.
        reason = Reason.METRIC_REGRESSION if injected else decision.reason
        raise StageFailure(reason, decision.message, metrics)
    move = registry.set_challenger(ctx.client, name, candidate)
    ctx.log.info("alias %s", move.describe())
    return ctx.result(decision.reason, decision.message, metrics, model_version=candidate, outputs=outputs)


def shadow_monitor(inputs: StageInputs, ctx: StageContext) -> StageResult:
    """Production and the shadow score the same claims; the gates are agreement and drift."""
    if not inputs.shadow_url:
        raise StageFailure(Reason.INVALID_INPUT, "no shadow model server URL (--shadow-url)")
    claims = shadow.traffic(inputs)
    requests = shadow.batches(claims)
    with httpx.Client(timeout=shadow.TIMEOUT_SECONDS) as client:
        candidate = shadow.score(client, inputs.shadow_url, requests)
        production = shadow.score(client, inputs.production_url, requests) if inputs.production_url else None
    reference, reference_version = shadow.champion_reference(ctx.client, inputs)
    drift = compare(reference, claims, DriftThresholds(max_psi=inputs.max_psi))
    metrics = {
        "claims": float(len(claims)),
        "shadow_p50_ms": candidate.percentile(50),
        "shadow_p99_ms": candidate.percentile(99),
        "shadow_errors": float(candidate.errors),
        "max_psi": drift.max_psi,
        **{f"psi_{f.feature}": float(f.psi) for f in drift.features if f.psi is not None},
    }
    outputs = {
        "drifted_features": ",".join(drift.drifted_features),
        "shadow_version": candidate.version or "",
        "reference_version": reference_version or "",
    }
    if production is not None:
        same, diff = shadow.agreement(production, candidate)
        metrics.update(
            agreement=same,
            mean_abs_probability_diff=diff,
            production_errors=float(production.errors),
            production_p50_ms=production.percentile(50),
            production_p99_ms=production.percentile(99),
        )
        outputs["production_version"] = production.version or ""
    mlflow.log_metrics(metrics)
    mlflow.log_dict(drift.to_dict(), "shadow/drift_report.json")

    if candidate.errors == len(requests):
        raise StageFailure(
            Reason.SHADOW_DISAGREEMENT, f"the shadow at {inputs.shadow_url} answered nothing", metrics
        )
    if production is not None and metrics["agreement"] < inputs.min_shadow_agreement:
        message = (
            f"shadow v{candidate.version} agrees with production v{production.version} on "
            f"{metrics['agreement']:.1%} of {len(claims)} claims (gate {inputs.min_shadow_agreement:.1%})"
        )
        raise StageFailure(Reason.SHADOW_DISAGREEMENT, message, metrics)
    if drift.max_psi > inputs.max_psi:
        message = f"input {drift.summary()}; max PSI {drift.max_psi:.3f} (gate {inputs.max_psi})"
        raise StageFailure(Reason.DRIFT_DETECTED, message, metrics)
    if production is None:
        message = (
            f"no production yet: shadow v{candidate.version} scored {len(claims)} claims; {drift.summary()}"
        )
        return ctx.result(Reason.NO_PRODUCTION, message, metrics, outputs=outputs)
    message = (
        f"agreement {metrics['agreement']:.1%} with production v{production.version}; p99 "
        f"{metrics['shadow_p99_ms']:.0f} vs {metrics['production_p99_ms']:.0f} ms; {drift.summary()}"
    )
    return ctx.result(Reason.PASSED, message, metrics, outputs=outputs)


def promote_production(inputs: StageInputs, ctx: StageContext) -> StageResult:
    name = inputs.model_name
    version = inputs.candidate_version or registry.alias_version(ctx.client, name, registry.CHALLENGER)
    if version is None:
        raise StageFailure(
            Reason.INVALID_INPUT, f"no candidate version given and no {registry.CHALLENGER} alias"
        )
    try:
        context = release.parse_context(inputs.release_context)
        tags = registry.check_promotable(ctx.client, name, version)
    except (ValueError, registry.RegistryError) as exc:
        raise StageFailure(Reason.INVALID_INPUT, str(exc)) from exc
    promoter = str(context.get("promoter") or inputs.requested_by or "claimops-operator")
    promoted_at = registry.utc_now()
    champion = registry.alias_version(ctx.client, name, registry.CHAMPION)
    if champion == version and release.TAG_DIGEST in tags:
        # Promoting twice is a no-op: keep the record of the promotion that happened.
        digest, uri = tags[release.TAG_DIGEST], tags.get(release.TAG_URI, "")
    else:
        # Record first, alias last: a promoted version without its record is not acceptable.
        digest, uri = write_release_record(ctx, name, version, context, promoter, promoted_at)
    ctx.log.info("release record %s (%s)", uri, digest)
    try:
        move = registry.promote(ctx.client, name, version, promoter, inputs.run, at=promoted_at)
    except registry.RegistryError as exc:
        raise StageFailure(Reason.INVALID_INPUT, str(exc)) from exc
    ctx.log.info("alias %s", move.describe())
    mlflow.set_tags({"release_digest": digest, "release_uri": uri})
    outputs = {
        "champion_version": move.version,
        "previous_champion_version": move.previous or "",
        "release_digest": digest,
        "release_uri": uri,
    }
    return ctx.result(Reason.PASSED, move.describe(), model_version=move.version, outputs=outputs)


def write_release_record(
    ctx: StageContext, name: str, version: str, context: dict[str, Any], promoter: str, promoted_at: str
) -> tuple[str, str]:
    """Store the version's release record on its source run, read it back, tag the version
    with its digest and URI; StageFailure(ReleaseRecordFailed) when any of that fails."""
    try:
        source_run = ctx.client.get_model_version(name, version).run_id
        if not source_run:
            raise StageFailure(
                Reason.RELEASE_RECORD_FAILED, f"{name} v{version} has no source run to store its record in"
            )
        uri = mlflow.get_tracking_uri()
        mlmodel = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{name}/{version}/MLmodel", dst_path=str(ctx.workdir / "subject"), tracking_uri=uri
            )
        )
        model = release.ReleasedModel(
            name, version, hashlib.sha256(mlmodel.read_bytes()).hexdigest(), source_run, uri
        )
        data = release.canonical_bytes(release.build_statement(context, model, promoter, promoted_at))
        path = ctx.workdir / release.artifact_path(version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        ctx.client.log_artifact(source_run, str(path), release.ARTIFACT_DIR)
        digest = release.digest(data)
        # The digest is of the bytes the store holds, not of the ones we meant to send.
        stored = Path(
            mlflow.artifacts.download_artifacts(
                run_id=source_run,
                artifact_path=release.artifact_path(version),
                dst_path=str(ctx.workdir / "stored"),
                tracking_uri=uri,
            )
        )
        if not release.verify(stored.read_bytes(), digest):
            raise StageFailure(
                Reason.RELEASE_RECORD_FAILED, f"the stored release record of {name} v{version} differs"
            )
        artifact = release.artifact_uri(source_run, version)
        ctx.client.set_model_version_tag(name, version, release.TAG_DIGEST, digest)
        ctx.client.set_model_version_tag(name, version, release.TAG_URI, artifact)
    except StageFailure:
        raise
    except Exception as exc:
        if tracking.is_connection_error(exc):
            raise  # the runner reports MLflowUnavailable (retryable)
        raise StageFailure(
            Reason.RELEASE_RECORD_FAILED,
            f"release record of {name} v{version} not stored ({type(exc).__name__}: {exc}); "
            "the champion did not move",
        ) from exc
    return digest, artifact


def rollback(inputs: StageInputs, ctx: StageContext) -> StageResult:
    try:
        move = registry.rollback(
            ctx.client,
            inputs.model_name,
            inputs.requested_by or "claimops-operator",
            inputs.run,
            reason=inputs.reason or "",
        )
    except registry.RegistryError as exc:
        raise StageFailure(Reason.NO_PREVIOUS_CHAMPION, str(exc)) from exc
    ctx.log.info("alias %s", move.describe())
    outputs = {"champion_version": move.version, "rolled_back_from_version": move.previous or ""}
    return ctx.result(Reason.PASSED, move.describe(), model_version=move.version, outputs=outputs)


StageFunction = Callable[[StageInputs, StageContext], StageResult]


def stage_function(name: str) -> StageFunction:
    """The function a CLI stage runs: the one the contract's row names, in this module."""
    row = stage_row(name)
    function = globals().get(row.function) if row.cli else None
    if not callable(function):
        raise KeyError(f"{name!r} has no stage function {row.function} in {__name__}")
    return cast(StageFunction, function)
