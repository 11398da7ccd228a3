"""Compare before approving: a run's candidate model version beside the champion it was
evaluated against, read from the PipelineRun's status and the two versions' training runs in
MLflow. Pure: the page route fetches, this shapes, `charts` draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .charts import BarGroup, Interval, PairedBars

#: The training metrics compared, in table order.
METRICS = ("auc_roc", "f1", "accuracy", "precision", "recall")
#: What the model learned from: run tags and parameters that describe its data.
DATASET_TAGS = ("dataset_window", "seed", "commit_sha", "failure_injection")
DATASET_PARAMS = ("train_rows", "test_rows")
#: The two plots every training run logs (stages.py `_log_training`).
PLOTS = (("plots/feature_importance.png", "Feature importance"), ("plots/shap_summary.png", "SHAP summary"))
IMPORTANCE_PREFIX, SHAP_PREFIX = "importance_", "shap_mean_abs_"


def compared_versions(run: Mapping[str, Any], champion_alias: str | None) -> tuple[str | None, str | None]:
    """(candidate, champion) version numbers: the candidate this run registered, and the champion
    its evaluation compared against (the alias's version until the evaluation has run)."""
    status = run.get("status") or {}
    candidate = (status.get("mlflow") or {}).get("modelVersion") or None
    evaluation = status.get("evaluation") or {}
    champion = evaluation.get("championVersion") if "passed" in evaluation else champion_alias
    return (str(candidate) if candidate else None, str(champion) if champion else None)


def _dataset(side: Mapping[str, Any] | None) -> dict[str, Any]:
    found = {**(side or {}).get("tags", {}), **(side or {}).get("params", {})}
    if found.get("commit_sha"):
        found["commit_sha"] = str(found["commit_sha"])[:12]
    return found


def _side(
    role: str, version: str | None, versions: Mapping[str, Mapping[str, Any]], runs: Mapping[str, Any]
) -> dict[str, Any] | None:
    if version is None:
        return None
    registered = versions.get(version) or {}
    run_id = registered.get("runId")
    training = runs.get(str(run_id)) if run_id else None
    return {
        "role": role,
        "version": version,
        "runId": run_id,
        "found": training is not None,
        "metrics": (training or {}).get("metrics") or {},
        "params": (training or {}).get("params") or {},
        "tags": (training or {}).get("tags") or {},
        "aliases": list(registered.get("aliases") or ()),
    }


def _rows(
    names: Sequence[str], candidate: Mapping[str, Any], champion: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        a = candidate.get(name)
        b = champion.get(name) if champion is not None else None
        rows.append({"name": name, "candidate": a, "champion": b, "differs": champion is not None and a != b})
    return rows


def _metric_rows(
    candidate: Mapping[str, float], champion: Mapping[str, float] | None
) -> list[dict[str, Any]]:
    rows = _rows(METRICS, candidate, champion)
    for row in rows:
        a, b = row["candidate"], row["champion"]
        row["diff"] = a - b if isinstance(a, float | int) and isinstance(b, float | int) else None
    return rows


def _bars(
    chart_id: str, title: str, prefix: str, x_label: str, sides: Sequence[dict[str, Any]]
) -> PairedBars:
    features = sorted(
        {k.removeprefix(prefix) for s in sides for k in s["metrics"] if k.startswith(prefix)},
        key=lambda f: -max(s["metrics"].get(prefix + f, 0.0) for s in sides),
    )
    return PairedBars(
        id=chart_id,
        title=title,
        description=f"{title} of each input feature, the candidate's bar above the champion's.",
        sides=tuple(f"v{s['version']} ({s['role']})" for s in sides),
        rows=tuple(BarGroup(f, tuple(s["metrics"].get(prefix + f) for s in sides)) for f in features),
        x_label=x_label,
    )


def _gates(evaluation: Mapping[str, Any], gates: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each evaluation gate, its threshold and what the evaluation measured against it."""
    min_auc, max_drop = float(gates.get("minAuc", 0.75)), float(gates.get("maxAucDrop", 0.02))
    auc, delta = evaluation.get("candidateAuc"), evaluation.get("delta")
    return [
        {
            "name": "minAuc",
            "rule": f"candidate AUC ≥ {min_auc:.4f}",
            "measured": None if auc is None else f"{auc:.4f}",
            "passed": None if auc is None else auc >= min_auc,
        },
        {
            "name": "maxAucDrop",
            "rule": f"AUC delta ≥ −{max_drop:.4f} (drop at most {max_drop:.4f})",
            "measured": None if delta is None else f"{delta:+.4f}",
            "passed": None if delta is None else delta >= -max_drop,
        },
    ]


def compare_view(
    run: Mapping[str, Any],
    versions: Sequence[Mapping[str, Any]],
    training_runs: Mapping[str, Mapping[str, Any]],
    champion_alias: str | None,
) -> dict[str, Any]:
    """The compare page's context. ``versions`` are the registry's (`MlflowGateway.model_versions`),
    ``training_runs`` flattened MLflow runs by id, ``champion_alias`` the alias's version now."""
    spec, status = run.get("spec") or {}, run.get("status") or {}
    by_version = {str(v["version"]): v for v in versions}
    candidate_version, champion_version = compared_versions(run, champion_alias)
    candidate = _side("candidate", candidate_version, by_version, training_runs)
    champion = _side("champion", champion_version, by_version, training_runs)
    evaluation = status.get("evaluation") or {}
    gates = spec.get("gates") or {}
    notes = []
    if champion_version and champion_alias and champion_alias != champion_version:
        notes.append(
            f"The champion alias has moved to v{champion_alias} since this run's evaluation compared "
            f"against v{champion_version}."
        )
    if candidate is None:
        notes.append("This run has not registered a candidate yet (full-train registers it).")
    elif champion is None:
        notes.append(
            "There is no champion yet: the candidate is compared with nothing and the drop gate passes."
        )
    sides = [s for s in (candidate, champion) if s is not None]
    delta = evaluation.get("delta")
    interval = None
    if delta is not None:
        max_drop = float(gates.get("maxAucDrop", 0.02))
        interval = Interval(
            id="compare-delta",
            title="AUC delta of the candidate against the champion",
            description="The evaluation's AUC delta on a fresh holdout, its 95% bootstrap interval, "
            "zero, and the largest drop the gate lets through.",
            label="AUC delta (candidate − champion)",
            value=float(delta),
            low=evaluation.get("ciLow"),
            high=evaluation.get("ciHigh"),
            threshold=-max_drop,
            threshold_label=f"gate: −{max_drop:.4f}",
        )
    return {
        "candidate": candidate,
        "champion": champion,
        "sides": sides,
        "metrics": _metric_rows(candidate["metrics"], champion["metrics"] if champion else None)
        if candidate
        else [],
        "params": _rows(
            sorted({k for s in sides for k in s["params"]} - set(DATASET_PARAMS)),
            candidate["params"] if candidate else {},
            champion["params"] if champion else None,
        ),
        "dataset": _rows(
            DATASET_TAGS + DATASET_PARAMS,
            _dataset(candidate),
            _dataset(champion) if champion else None,
        ),
        "importance": _bars(
            "compare-importance", "Feature importance", IMPORTANCE_PREFIX, "impurity importance", sides
        ),
        "shap": _bars(
            "compare-shap", "Mean |SHAP| per feature", SHAP_PREFIX, "mean |SHAP value| of P(approved)", sides
        ),
        "plots": [
            {"title": title, "path": path, "sides": [s for s in sides if s["runId"]]} for path, title in PLOTS
        ],
        "evaluation": evaluation,
        "interval": interval,
        "gates": _gates(evaluation, gates),
        "notes": notes,
    }
