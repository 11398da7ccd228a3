"""Server-rendered pages (`/ui/*`), their live fragments and their form posts.

Pages are plain HTML that work without JavaScript; `static/app.js` keeps them current by
listening to `/events` and swapping in the fragments below. Form posts carry the CSRF token
and redirect back (303), so a refresh never re-submits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from claimops_stages import contract
from claimops_stages.claims import CATEGORICAL_FEATURES, DRIFT_PROFILES

from .. import actions, auth, inspector
from ..actions import RollbackRequest, RunRequest
from ..chart_views import drift_history, model_trend, rejected_versions, trend_run_ids
from ..charts import render_interval, render_line_chart, render_paired_bars
from ..claims_stream import HISTORY_WINDOWS, PSI_THRESHOLD
from ..comparison import compare_view, compared_versions
from ..deps import RunName, Services, Svc, User, current_user
from ..errors import InvalidInput, UiError
from ..mlflow_gateway import CHALLENGER, CHAMPION
from ..views import (
    EXPLORER_RUNS,
    ExplorerFilters,
    deployment_list,
    failure_list,
    mlflow_overview,
    queue_positions,
    run_page_context,
    run_summary,
    sort_runs,
)
from .mlflow import MODEL

router = APIRouter(include_in_schema=False)


def context(request: Request, svc: Services, nav: str, **extra: Any) -> dict[str, Any]:
    return {
        "request": request,
        "nav": nav,
        "user": current_user(request),
        "csrf": auth.csrf_token(request.session),
        "read_only": not svc.authenticator.enabled,
        "namespace": svc.config.namespace,
        "mlflow_ui": svc.config.mlflow_link,
        **extra,
    }


def ui_groups(svc: Services) -> list[str]:
    """The groups the API server sees on a signed-in user's writes: the impersonation group,
    and system:authenticated, which it adds to every impersonated user."""
    return [svc.config.impersonate_group, "system:authenticated"]


def render(
    request: Request, svc: Services, template: str, nav: str, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    return svc.templates.TemplateResponse(
        request, template, context(request, svc, nav, **extra), status_code=status_code
    )


def back(next_url: str | None, default: str) -> RedirectResponse:
    # Only local pages: an open redirect would let another site bounce users through us.
    target = next_url if next_url and next_url.startswith("/ui/") and "//" not in next_url else default
    return RedirectResponse(target, status_code=303)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/runs", status_code=307)


@router.get("/favicon.ico")
def favicon() -> RedirectResponse:
    return RedirectResponse("/static/favicon.svg", status_code=308)


# -- session ---------------------------------------------------------------------------------


@router.get("/ui/login")
def login_page(request: Request, svc: Svc, next: str = "/ui/runs") -> HTMLResponse:
    return render(request, svc, "login.html", "login", next=next, error=None)


@router.post("/ui/login")
async def login(
    request: Request,
    svc: Svc,
    username: Annotated[str, Form(max_length=256)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=512)] = "/ui/runs",
) -> Response:
    error = None
    if not svc.authenticator.enabled:
        error = "Sign-in is disabled: no htpasswd file is configured, so the UI is read-only."
    elif not auth.same_origin(request.headers.get("origin"), request.headers.get("host")):
        error = "Cross-site sign-in refused."
    elif not csrf_token or csrf_token != request.session.get(auth.SESSION_CSRF):
        error = "The form expired; please try again."
    else:
        try:
            ok = await run_in_threadpool(svc.authenticator.verify, username, password)
        except UiError as exc:
            ok, error = False, exc.detail
        if ok:
            auth.start_session(request.session, username)
            return back(next, "/ui/runs")
        error = error or "Unknown user or wrong password."
    return render(
        request,
        svc,
        "login.html",
        "login",
        status_code=401 if svc.authenticator.enabled else 403,
        next=next,
        error=error,
    )


@router.post("/ui/logout")
async def logout(request: Request, user: User) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse("/ui/runs", status_code=303)


# -- runs ------------------------------------------------------------------------------------


@router.get("/ui/runs")
def runs_page(request: Request, svc: Svc) -> HTMLResponse:
    runs = svc.kube.list_runs()
    places = queue_positions(runs)
    rows = [run_summary(r, places.get(r["metadata"]["name"])) for r in sort_runs(runs)]
    try:
        failures = failure_list(svc.kube.failure_defaults())
        failures_error = None
    except UiError as exc:
        failures, failures_error = [], exc.detail
    return render(
        request, svc, "runs.html", "runs", runs=rows, failures=failures, failures_error=failures_error,
        profiles=list(DRIFT_PROFILES), synced=svc.kube.runs.synced,
    )  # fmt: skip


@router.get("/ui/fragments/runs/{name}/row")
def run_row(request: Request, name: RunName, svc: Svc) -> HTMLResponse:
    run = svc.kube.get_run(name)
    row = run_summary(run, _queue_position(svc, run))
    return svc.templates.TemplateResponse(request, "_run_row.html", {"r": row})


def _queue_position(svc: Services, run: Mapping[str, Any]) -> int | None:
    if (run.get("status") or {}).get("phase") != "Queued":
        return None
    return queue_positions(svc.kube.list_runs()).get(run["metadata"]["name"])


@router.get("/ui/runs/{name}")
def run_page(
    request: Request,
    name: RunName,
    svc: Svc,
    stage: Annotated[str, Query(max_length=64)] = "",
    tab: str = "code",
) -> HTMLResponse:
    run = svc.kube.get_run(name)
    ctx = run_page_context(run, stage, current_user(request), ui_groups(svc), _queue_position(svc, run))
    inspected = inspector.view(svc, run, ctx["stage"], tab)
    ctx.update(inspected)
    return render(request, svc, "run.html", "runs", **ctx)


@router.get("/ui/runs/{name}/compare")
def compare_page(request: Request, name: RunName, svc: Svc) -> HTMLResponse:
    """The candidate beside the champion, with the approval buttons: what a reviewer reads
    before deciding."""
    run = svc.kube.get_run(name)
    error = None
    versions: list[dict[str, Any]] = []
    training: dict[str, dict[str, Any]] = {}
    champion_alias = None
    try:
        champion = svc.mlflow.alias(MODEL, CHAMPION)
        champion_alias = champion["version"] if champion else None
        versions = svc.mlflow.model_versions(MODEL)
        wanted = {v for v in compared_versions(run, champion_alias) if v}
        training = svc.mlflow.runs_by_id(str(v["runId"]) for v in versions if v["version"] in wanted)
    except UiError as exc:
        error = exc.detail
    view = compare_view(run, versions, training, champion_alias)
    ctx = run_page_context(run, "", current_user(request), ui_groups(svc), _queue_position(svc, run))
    return render(
        request, svc, "compare.html", "runs", **ctx, compare=view, error=error,
        importance=render_paired_bars(view["importance"]), shap=render_paired_bars(view["shap"]),
        interval=render_interval(view["interval"]) if view["interval"] else None,
    )  # fmt: skip


@router.get("/ui/fragments/runs/{name}/live")
def run_live(
    request: Request, name: RunName, svc: Svc, stage: Annotated[str, Query(max_length=64)] = ""
) -> HTMLResponse:
    run = svc.kube.get_run(name)
    return svc.templates.TemplateResponse(
        request,
        "_run_live.html",
        context(
            request,
            svc,
            "runs",
            **run_page_context(run, stage, current_user(request), ui_groups(svc), _queue_position(svc, run)),
        ),
    )


@router.get("/ui/fragments/runs/{name}/inspector/{stage}")
def inspector_fragment(
    request: Request, name: RunName, stage: Annotated[str, Path(max_length=64)], svc: Svc, tab: str = "code"
) -> HTMLResponse:
    run = svc.kube.get_run(name)
    ctx = {"run": run_summary(run), **inspector.view(svc, run, stage, tab)}
    return svc.templates.TemplateResponse(request, "_inspector.html", ctx)


# -- MLflow explorer -------------------------------------------------------------------------


@router.get("/ui/mlflow")
def mlflow_page(
    request: Request,
    svc: Svc,
    stage: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[str, Query(pattern="^(|RUNNING|FINISHED|FAILED|KILLED|SCHEDULED)$")] = "",
    version: Annotated[str, Query(pattern="^[0-9]{0,9}$")] = "",
) -> HTMLResponse:
    filters = ExplorerFilters(stage=stage, status=status, version=version)
    runs: list[dict[str, Any]] = []
    champion = challenger = None
    versions: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    error = None
    try:
        runs = svc.mlflow.search_runs(max_results=EXPLORER_RUNS, filter_string=filters.mlflow_filter())
        champion = svc.mlflow.alias(MODEL, CHAMPION)
        challenger = svc.mlflow.alias(MODEL, CHALLENGER)
        versions = svc.mlflow.model_versions(MODEL)
        by_id = svc.mlflow.runs_by_id(trend_run_ids(versions))
    except UiError as exc:
        error = exc.detail
    trend, delta = model_trend(
        versions,
        by_id,
        champion["version"] if champion else None,
        challenger["version"] if challenger else None,
        rejected_versions(svc.kube.list_runs()),
    )
    view = mlflow_overview(MODEL, runs, champion, challenger, versions, error, filters)
    return render(
        request, svc, "mlflow.html", "mlflow", **view, stages=contract.stage_names(),
        trend=render_line_chart(trend), delta=render_line_chart(delta),
    )  # fmt: skip


@router.get("/ui/mlflow/runs/{run_id}")
def mlflow_run_page(
    request: Request, run_id: Annotated[str, Path(pattern="^[0-9a-f]{32}$")], svc: Svc
) -> HTMLResponse:
    found = svc.mlflow.get_run(run_id)
    artifacts = svc.mlflow.all_artifacts(run_id)
    link = svc.mlflow.run_link(found["experimentId"], run_id)
    return render(request, svc, "mlflow_run.html", "mlflow", r=found, artifacts=artifacts, link=link)


# -- deployments -----------------------------------------------------------------------------


@router.get("/ui/deployments")
def deployments_page(request: Request, svc: Svc) -> HTMLResponse:
    return render(
        request,
        svc,
        "deployments.html",
        "deployments",
        deployments=deployment_list(svc.kube.list_deployments()),
    )


@router.get("/ui/fragments/deployments")
def deployments_fragment(request: Request, svc: Svc) -> HTMLResponse:
    return svc.templates.TemplateResponse(
        request,
        "_deployments.html",
        context(request, svc, "deployments", deployments=deployment_list(svc.kube.list_deployments())),
    )


# -- claims ----------------------------------------------------------------------------------


def _drift_history(svc: Services) -> dict[str, Any]:
    psi, js = drift_history(list(svc.claims.history), PSI_THRESHOLD, CATEGORICAL_FEATURES)
    return {"drift_psi": render_line_chart(psi), "drift_js": render_line_chart(js)}


@router.get("/ui/claims")
def claims_page(request: Request, svc: Svc) -> HTMLResponse:
    return render(
        request, svc, "claims.html", "claims", stream=svc.claims.status(), profiles=list(DRIFT_PROFILES),
        history_windows=HISTORY_WINDOWS, **_drift_history(svc),
    )  # fmt: skip


@router.get("/ui/fragments/claims/drift-history")
def drift_history_fragment(request: Request, svc: Svc) -> HTMLResponse:
    return svc.templates.TemplateResponse(request, "_drift_history.html", _drift_history(svc))


# -- form posts ------------------------------------------------------------------------------


def _opt_int(value: str) -> int | None:
    return int(value) if value.strip() else None


@router.post("/ui/actions/commit")
async def commit_action(
    user: User,
    svc: Svc,
    rows: Annotated[str, Form(max_length=10)] = "",
    n_estimators: Annotated[str, Form(max_length=10)] = "",
    drift: Annotated[str, Form(max_length=10)] = "",
    auto_continue: Annotated[str, Form(max_length=10)] = "",
) -> RedirectResponse:
    try:
        req = RunRequest(
            rows=_opt_int(rows),
            nEstimators=_opt_int(n_estimators),
            drift=drift or None,
            autoContinueToCD=auto_continue == "on",
        )
    except ValueError as exc:
        raise InvalidInput(f"invalid run settings: {exc}") from exc
    run = await run_in_threadpool(actions.start_run, svc, user, req)
    return RedirectResponse(f"/ui/runs/{run['metadata']['name']}", status_code=303)


@router.post("/ui/actions/runs/{name}/{action}")
async def run_action(
    name: RunName,
    action: Annotated[str, Path(pattern="^(continue|approve|reject|cancel)$")],
    user: User,
    svc: Svc,
    comment: Annotated[str, Form(max_length=1024)] = "",
    stage: Annotated[str, Form(max_length=64)] = "",
) -> RedirectResponse:
    if action == "continue":
        await run_in_threadpool(actions.continue_to_cd, svc, user, name)
    elif action == "approve":
        await run_in_threadpool(actions.decide, svc, user, name, "Approved", comment)
    elif action == "reject":
        await run_in_threadpool(actions.decide, svc, user, name, "Rejected", comment)
    else:
        await run_in_threadpool(actions.cancel, svc, user, name)
    suffix = f"?stage={stage}" if stage in contract.stage_names() else ""
    return RedirectResponse(f"/ui/runs/{name}{suffix}", status_code=303)


@router.post("/ui/actions/rollback")
async def rollback_action(
    user: User,
    svc: Svc,
    reason: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=512)] = "",
) -> RedirectResponse:
    await run_in_threadpool(actions.rollback, svc, user, RollbackRequest(reason=reason))
    return back(next, "/ui/deployments")


@router.post("/ui/actions/failures/{mode}/toggle")
async def failure_action(
    mode: Annotated[str, Path(max_length=64)],
    user: User,
    svc: Svc,
    next: Annotated[str, Form(max_length=512)] = "",
) -> RedirectResponse:
    await run_in_threadpool(actions.toggle_failure, svc, user, mode)
    return back(next, "/ui/runs")


@router.post("/ui/actions/claims/{action}")
async def claims_action(
    action: Annotated[str, Path(pattern="^(start|stop)$")],
    user: User,
    svc: Svc,
    profile: Annotated[str, Form(pattern="^(none|mild|severe)$")] = "none",
) -> RedirectResponse:
    if action == "start":
        await svc.claims.start(profile, user)
    else:
        await svc.claims.stop()
    return RedirectResponse("/ui/claims", status_code=303)
