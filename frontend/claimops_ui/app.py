"""The FastAPI application: wires settings, gateways, routers and error translation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from swagger_ui_bundle import swagger_ui_path

from claimops_stages.contract import SPEC_DEFAULTS

from . import __version__, auth
from .claims_stream import ClaimsStream, Reference, Scorer
from .config import UiConfig
from .deps import STATIC_DIR, Services
from .errors import UiError, Unavailable
from .kube import KubeGateway, LogSource, load_configuration
from .mlflow_gateway import CHAMPION, MlflowGateway
from .routers import claims, failures, health, mlflow, pages, pipeline, session, steps, ws
from .schemas import ErrorBody

log = logging.getLogger("claimops.ui")
SESSION_COOKIE = "claimops_session"
#: Swagger UI's files (the swagger-ui-bundle-v2 package), served by the UI itself: /docs needs
#: no CDN, so it works in clusters without internet access.
SWAGGER_UI_PREFIX = "/swagger-ui"
DESCRIPTION = """ClaimOps UI API: the seed's REST and WebSocket API, backed by PipelineRun and
ModelDeployment resources and MLflow. Mutations need a signed-in session and its CSRF token
(`X-CSRF-Token`, see `/auth/session`); they are made as the signed-in user (Kubernetes
impersonation). WebSockets: `/ws/logs/{run_id}`, `/ws/claims`."""
#: Every error the handlers below write has one body; documenting it here (the 4XX range also
#: replaces FastAPI's default 422 schema, which is not the shape `invalid` answers with).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "Refused: invalid input, not signed in, not found, conflict"},
    503: {"model": ErrorBody, "description": "A backend (Kubernetes API, MLflow) is unavailable"},
}


def _reference_loader(svc_mlflow: MlflowGateway, model: str) -> Reference:
    """The champion's training data settings (seed and window tags of its training run)."""
    try:
        champion = svc_mlflow.alias(model, CHAMPION)
        if champion and champion.get("runId"):
            tags = svc_mlflow.get_run(str(champion["runId"]))["tags"]
            seed, window = tags.get("seed"), tags.get("dataset_window")
            if seed and window and seed.isdigit():
                return Reference(
                    int(seed),
                    window,
                    f"champion v{champion['version']} training data (seed {seed}, {window})",
                )
    except UiError as exc:
        log.warning("champion reference unavailable: %s", exc.detail)
    return Reference()


def build_services(
    config: UiConfig, log_source: LogSource | None = None, resolve_url: Callable[[str], str] | None = None
) -> Services:
    kube = KubeGateway(
        load_configuration(config.kubeconfig),
        config.namespace,
        impersonate_group=config.impersonate_group,
        failure_configmap=config.failure_defaults_configmap,
        log_source=log_source,
    )
    mlflow_gw = MlflowGateway(config.mlflow_tracking_uri, config.mlflow_link)

    def production() -> tuple[str | None, str | None]:
        found = kube.deployment_for_role("production")
        if not found:
            return None, None
        status = found.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        return (status.get("url") if ready else None), status.get("servingVersion")

    scorer = Scorer(production, config.predict_path, resolve_url=resolve_url or (lambda url: url))

    def production_model() -> str:
        # The model production serves (its ModelDeployment's spec), the spec default without one.
        spec = (kube.deployment_for_role("production") or {}).get("spec") or {}
        return str((spec.get("model") or {}).get("name") or SPEC_DEFAULTS["model.name"])

    stream = ClaimsStream(scorer, lambda: _reference_loader(mlflow_gw, production_model()))
    return Services(config, kube, mlflow_gw, auth.Authenticator.from_file(config.htpasswd_file), stream)


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith("/ui") and "text/html" in request.headers.get("accept", "")


def create_app(
    config: UiConfig | None = None,
    *,
    log_source: LogSource | None = None,
    resolve_url: Callable[[str], str] | None = None,
    services: Services | None = None,
) -> FastAPI:
    """The app. `log_source` and `resolve_url` replace the pods/log API and in-cluster DNS
    where neither exists (the test layer's node stand-in)."""
    config = config or UiConfig.from_env()
    svc = services or build_services(config, log_source, resolve_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc.events.bind(asyncio.get_running_loop())
        svc.kube.runs.add_listener(svc.events.publish)
        svc.kube.deployments.add_listener(svc.events.publish)
        svc.kube.start()
        await asyncio.to_thread(svc.kube.runs.wait_synced, 10.0)
        try:
            yield
        finally:
            await svc.claims.stop()
            svc.kube.stop()
            svc.mlflow.close()

    # FastAPI's own /docs and /redoc load their JS/CSS from CDNs: /docs is served below from
    # local files, ReDoc is off.
    app = FastAPI(
        title="ClaimOps UI",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        responses=ERROR_RESPONSES,
    )
    app.state.services = svc
    app.add_middleware(
        SessionMiddleware,
        secret_key=auth.load_session_key(config.session_key_file),
        session_cookie=SESSION_COOKIE,
        same_site="lax",
        https_only=config.secure_cookies,
        max_age=12 * 3600,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.url.path.startswith("/ui"):
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                "connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
            )
        return response

    @app.exception_handler(UiError)
    async def ui_error(request: Request, exc: UiError) -> Response:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc.detail)
        if _wants_html(request):
            ctx = pages.context(request, svc, "error", error=exc)
            return svc.templates.TemplateResponse(request, "error.html", ctx, status_code=exc.status)
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"error": "InvalidInput", "detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": "HTTPError", "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Backends that fail in a way the gateways did not foresee: a 503 with the cause, and
        # the traceback in the log (never a bare 500 page).
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        error = Unavailable(f"{type(exc).__name__}: {exc}")
        return JSONResponse(error.to_json(), status_code=error.status)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{SWAGGER_UI_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER_UI_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/favicon.svg",
            # No badge from the public validator service.
            swagger_ui_parameters={"validatorUrl": None},
        )

    for router in (
        health.router,
        session.router,
        pipeline.router,
        steps.router,
        mlflow.router,
        claims.router,
        failures.router,
        ws.router,
        pages.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.mount(SWAGGER_UI_PREFIX, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    return app
