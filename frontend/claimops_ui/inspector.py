"""The step inspector's four views of one stage of one run: code, config, logs, outputs."""

from __future__ import annotations

from typing import Any

from claimops_stages import contract

from .deps import Services
from .errors import NotFound, UiError
from .views import stage_code, stage_config, stage_entries

SHAP_ARTIFACT = "plots/shap_summary.png"
TABS = ("code", "config", "logs", "outputs")


def _entry(run: dict[str, Any], stage: str) -> dict[str, Any]:
    return stage_entries(run).get(stage, {})


def config_for(svc: Services, run: dict[str, Any] | None, stage: str) -> dict[str, Any]:
    job = None
    if run is not None:
        job_name = _entry(run, stage).get("job")
        if job_name:
            job = svc.kube.get_job(str(job_name))
    return stage_config(stage, run, job)


def logs_for(svc: Services, run: dict[str, Any], stage: str) -> dict[str, Any]:
    """The pod's log while the pod exists, else the log artifact the stage saved in MLflow."""
    entry = _entry(run, stage)
    job = entry.get("job")
    notes: list[str] = []
    if job:
        pods = svc.kube.pods_of_job(str(job))
        for pod in reversed(pods):
            name = pod["metadata"]["name"]
            text = svc.kube.pod_log(name)
            if text is not None:
                return {"stage": stage, "source": "pod", "pod": name, "text": text}
        notes.append(f"no pod of Job {job} has a log any more")
    run_id = entry.get("mlflowRunId")
    if run_id:
        try:
            content, _ = svc.mlflow.artifact(str(run_id), f"logs/{stage}.log")
            return {
                "stage": stage,
                "source": "mlflow",
                "mlflowRunId": run_id,
                "text": content.decode(errors="replace"),
            }
        except UiError as exc:
            notes.append(f"MLflow log artifact: {exc.detail}")
    if not job:
        notes.append(
            "this stage runs no Job"
            if entry.get("attempt") == 0 or not entry
            else "the stage has not started"
        )
    return {"stage": stage, "source": "none", "text": "", "note": "; ".join(notes) or "no log yet"}


def outputs_for(svc: Services, run: dict[str, Any], stage: str) -> dict[str, Any]:
    entry = _entry(run, stage)
    result: dict[str, Any] = {
        "stage": stage,
        "state": entry.get("state", "Pending"),
        "result": {
            k: entry.get(k)
            for k in (
                "reason",
                "message",
                "metrics",
                "outputs",
                "mlflowRunId",
                "modelVersion",
                "attempt",
                "startedAt",
                "finishedAt",
            )
            if entry.get(k) not in (None, "", {})
        },
    }
    run_id = entry.get("mlflowRunId")
    if run_id:
        try:
            mlflow_run = svc.mlflow.get_run(str(run_id))
            artifacts = svc.mlflow.all_artifacts(str(run_id))
        except NotFound:
            result["mlflowError"] = f"MLflow run {run_id} not found"
        except UiError as exc:
            result["mlflowError"] = exc.detail
        else:
            result["mlflow"] = {
                "runId": run_id,
                "link": svc.mlflow.run_link(mlflow_run["experimentId"], str(run_id)),
                "metrics": mlflow_run["metrics"],
                "params": mlflow_run["params"],
                "tags": mlflow_run["tags"],
                "artifacts": [
                    {
                        "path": a["path"],
                        "size": a.get("file_size"),
                        "url": f"/mlflow/artifacts/{run_id}/{a['path']}",
                    }
                    for a in artifacts
                ],
            }
            if any(a["path"] == SHAP_ARTIFACT for a in artifacts):
                result["shapImage"] = f"/mlflow/artifacts/{run_id}/{SHAP_ARTIFACT}"
    return result


def view(svc: Services, run: dict[str, Any], stage: str, tab: str) -> dict[str, Any]:
    """The inspector fragment's context; an unknown stage or tab falls back to the first one."""
    stage = stage if stage in contract.stage_names() else "commit"
    tab = tab if tab in TABS else "code"
    data: dict[str, Any] = {}
    error = None
    try:
        if tab == "code":
            data = stage_code(stage)
        elif tab == "config":
            data = config_for(svc, run, stage)
        elif tab == "logs":
            data = logs_for(svc, run, stage)
        else:
            data = outputs_for(svc, run, stage)
    except UiError as exc:
        error = exc.detail
    return {
        "stage": stage,
        "title": contract.stage(stage).title,
        "tab": tab,
        "tabs": TABS,
        "data": data,
        "error": error,
    }
