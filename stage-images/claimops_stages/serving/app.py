"""The model server app: wiring of state, routes and lifespan.

Routes (one router each):

* ``GET /health`` - 200 ``{"status": "ok"}`` as soon as the process serves HTTP (liveness).
* ``GET /ready`` - 503 until every arm's model is loaded, then 200 with the model name,
  version, inference path (``onnx`` | ``sklearn``), the fallback reason and the A/B split.
* ``POST /predict`` - one claim, or ``{"claims": [...]}`` (1 to MAX_BATCH_CLAIMS claims).
  200 ``{"model_name", "model_version", "arm", "predictions": [{"probability_approved",
  "outcome"[, "claim_id"]}]}``; a single claim gets the same shape with one prediction.
  ``outcome`` is Approved when P(Approved) > 0.5, as the pipeline's ``predict`` decides.
  Bad bodies: 422 (413 when too large) with FastAPI-style ``detail`` entries; 503 before the
  model is loaded.
* ``GET /metrics`` - Prometheus text (``claimops_model_server_*``).
* ``/v2/...`` - the Open Inference Protocol v2 (REST): health, metadata, infer
  (``open_inference``).
* ``POST /invocations``, ``GET /ping``, ``GET /version`` - MLflow's scoring protocol
  (``mlflow_scoring``).

Every protocol goes through :class:`Scoring`: readiness, body limits, the A/B split, the
micro-batcher and the metrics are one.

The model loads in the background after the server starts, so liveness answers at once and a
registry outage delays readiness (retried with backoff) instead of crash-looping the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Request, Response

from claimops_stages.claims import FEATURES
from claimops_stages.serving import mlflow_scoring, open_inference, protocols
from claimops_stages.serving.abtest import CHALLENGER, PRIMARY, Arm, TrafficSplit
from claimops_stages.serving.batching import BatcherClosedError, MicroBatcher
from claimops_stages.serving.config import ServerConfig
from claimops_stages.serving.inference import Selection, select_predictor
from claimops_stages.serving.metrics import CONTENT_TYPE, ServerMetrics
from claimops_stages.serving.schema import (
    MAX_BODY_BYTES,
    ParsedRequest,
    RequestError,
    error_entry,
    load_json,
    parse_predict_body,
    predict_body_json_schema,
)
from claimops_stages.serving.source import MlflowRegistry, ModelSource

log = logging.getLogger("claimops.serving")

JSON = "application/json"
#: The `protocol` label of requests_total, one per protocol the server speaks (protocols.py).
PREDICT = protocols.PREDICT.name
PROTOCOLS = tuple(p.name for p in protocols.PROTOCOLS)
SERVER_NAME = "claimops-model-server"
SERVER_VERSION = importlib.metadata.version("claimops")
APPROVED, DENIED = "Approved", "Denied"
#: Seconds between load attempts while the registry is unreachable (doubling, capped).
RETRY_FIRST, RETRY_MAX = 1.0, 30.0
#: Oversized bodies up to this size are drained before the 413 (see _read_body).
DRAIN_LIMIT_BYTES = 16 * MAX_BODY_BYTES
TOO_LARGE = f"Request body exceeds {MAX_BODY_BYTES} bytes"


@dataclass
class ServedModel:
    arm: Arm
    name: str
    version: str
    selection: Selection
    batcher: MicroBatcher
    load_seconds: float

    def describe(self) -> dict[str, Any]:
        return {
            "model_version": self.version,
            "inference": self.selection.inference,
            "fallback_reason": self.selection.fallback_reason,
            "onnx_max_abs_diff": self.selection.max_abs_diff,
            "load_seconds": round(self.load_seconds, 3),
        }


@dataclass
class ServerState:
    config: ServerConfig
    source: ModelSource
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    models: dict[Arm, ServedModel] = field(default_factory=dict)
    split: TrafficSplit | None = None
    ready: bool = False
    load_error: str | None = None
    #: Pre-encoded JSON prefix per arm: the part of every response that never changes.
    response_prefix: dict[Arm, bytes] = field(default_factory=dict)

    def arms(self) -> list[tuple[Arm, str | None, str | None]]:
        c = self.config
        arms: list[tuple[Arm, str | None, str | None]] = [(PRIMARY, c.model_version, c.model_alias)]
        if c.ab_challenger_version is not None:
            arms.append((CHALLENGER, c.ab_challenger_version, None))
        return arms


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload).encode(), status_code=status, media_type=JSON)


def _load_arm(
    state: ServerState, arm: Arm, version: str | None, alias: str | None
) -> tuple[str, Selection, float]:
    """Blocking: fetch, convert and check one model (runs in a thread)."""
    started = time.perf_counter()
    name = state.config.model_name
    resolved = state.source.resolve(name, version, alias)
    pipeline = state.source.load(name, resolved)
    selection = select_predictor(pipeline, state.config.inference, threads=state.config.inference_threads)
    return resolved, selection, time.perf_counter() - started


def _install(state: ServerState, arm: Arm, version: str, selection: Selection, seconds: float) -> None:
    m = state.metrics
    config = state.config
    batcher = MicroBatcher(
        selection.predictor.predict,
        FEATURES,
        max_rows=config.max_batch_claims,
        max_wait=config.batch_wait_ms / 1000,
        inline_rows=config.inline_batch_claims,
        observe=_batch_observer(m, arm),
    )
    batcher.start()
    state.models[arm] = ServedModel(arm, config.model_name, version, selection, batcher, seconds)
    prefix = json.dumps({"model_name": config.model_name, "model_version": version, "arm": arm})
    state.response_prefix[arm] = (prefix[:-1] + ', "predictions": ').encode()
    m.model_info.labels(
        arm, config.model_name, version, selection.inference, (selection.fallback_reason or "")[:120]
    ).set(1)
    m.fallback.labels(arm).set(0 if selection.inference == "onnx" else 1)
    if selection.max_abs_diff is not None:
        m.max_abs_diff.labels(arm).set(selection.max_abs_diff)
    m.load_seconds.labels(arm).set(seconds)
    log.info(
        "arm %s: %s v%s loaded in %.1f s; inference %s%s",
        arm,
        config.model_name,
        version,
        seconds,
        selection.inference,
        f" (fallback: {selection.fallback_reason})" if selection.fallback_reason else "",
    )


def _batch_observer(m: ServerMetrics, arm: Arm) -> Any:
    rows_hist, requests_hist, seconds_hist = (
        m.batch_rows.labels(arm),
        m.batch_requests.labels(arm),
        m.inference_seconds.labels(arm),
    )

    def observe(rows: int, requests: int, seconds: float) -> None:
        rows_hist.observe(rows)
        requests_hist.observe(requests)
        seconds_hist.observe(seconds)

    return observe


async def load_models(state: ServerState) -> None:
    """Load every arm, retrying with backoff until it works (or the server stops)."""
    delay = RETRY_FIRST
    for arm, version, alias in state.arms():
        while arm not in state.models:
            try:
                resolved, selection, seconds = await asyncio.to_thread(_load_arm, state, arm, version, alias)
            except Exception as exc:
                state.load_error = (
                    f"{arm} model {state.config.model_name} ({version or '@' + str(alias)}): "
                    + (f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
                )
                log.warning("load failed, retrying in %.0f s: %s", delay, state.load_error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            _install(state, arm, resolved, selection, seconds)
    if state.split is not None and state.models[PRIMARY].version == state.models[CHALLENGER].version:
        log.warning("A/B test compares version %s with itself", state.models[PRIMARY].version)
    state.load_error = None
    state.ready = True
    state.metrics.ready.set(1)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it exceeds MAX_BODY_BYTES.

    An oversized body is still read (and dropped) up to DRAIN_LIMIT_BYTES: answering while
    the client is still sending makes the server close a socket with unread data, which the
    client sees as a connection reset instead of the 413 and its details."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > DRAIN_LIMIT_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= MAX_BODY_BYTES:
            chunks.append(chunk)
        elif size > DRAIN_LIMIT_BYTES:
            break
    return b"".join(chunks) if size <= MAX_BODY_BYTES else None


def health_router() -> APIRouter:
    router = APIRouter()
    ok = json.dumps({"status": "ok"}).encode()

    @router.get("/health")
    async def health() -> Response:
        return Response(ok, media_type=JSON)

    return router


def ready_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    @router.get("/ready")
    async def ready() -> Response:
        config = state.config
        if not state.ready:
            return _json(
                {
                    "ready": False,
                    "model_name": config.model_name,
                    "reason": state.load_error or "model loading",
                },
                503,
            )
        primary = state.models[PRIMARY]
        ab = None
        if CHALLENGER in state.models:
            challenger = state.models[CHALLENGER]
            ab = {"challenger_version": challenger.version, "traffic_percent": config.ab_traffic_percent}
            ab.update(
                {f"challenger_{k}": v for k, v in challenger.describe().items() if k != "model_version"}
            )
        return _json(
            {
                "ready": True,
                "model_name": config.model_name,
                **primary.describe(),
                "model_alias": config.model_alias,
                "ab": ab,
            }
        )

    return router


def metrics_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    return router


class ScoringError(Exception):
    """Scoring could not run (not ready, shutting down, an inference bug): HTTP ``status``."""

    def __init__(self, status: int, kind: str, msg: str, arm: str = "none") -> None:
        super().__init__(msg)
        self.status, self.kind, self.msg, self.arm = status, kind, msg, arm


@dataclass
class Scored:
    arm: Arm
    version: str
    #: P(Approved) per claim, and whether it is above the decision threshold.
    probabilities: np.ndarray
    approved: np.ndarray

    def outcomes(self) -> list[str]:
        return [APPROVED if a else DENIED for a in self.approved.tolist()]


class Scoring:
    """What every protocol shares: readiness, body limits, arm choice, the micro-batcher and
    the metrics (requests counted per arm, status code and protocol)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        m = state.metrics
        self._latency = {arm: m.latency.labels(arm) for arm in (PRIMARY, CHALLENGER)}
        self._ok = {
            (arm, protocol): m.requests.labels(arm, "200", protocol)
            for arm in (PRIMARY, CHALLENGER)
            for protocol in PROTOCOLS
        }
        self._outcomes = {
            arm: (m.predictions.labels(arm, APPROVED), m.predictions.labels(arm, DENIED))
            for arm in (PRIMARY, CHALLENGER)
        }

    def refused(self, protocol: str, status: int, arm: str = "none") -> None:
        self.state.metrics.requests.labels(arm, str(status), protocol).inc()

    def check_ready(self) -> None:
        if not self.state.ready:
            raise ScoringError(503, "not_ready", self.state.load_error or "model loading")

    async def body(self, request: Request) -> bytes:
        body = await _read_body(request)
        if body is None:
            raise RequestError(413, [error_entry("body_too_large", ["body"], TOO_LARGE, None)])
        return body

    def arm_for(self, version: str | None) -> Arm | None:
        """The arm serving ``version`` (None: the split decides); None when no arm serves it."""
        if version is None:
            return self.state.split.next_arm() if self.state.split is not None else PRIMARY
        return next((arm for arm, served in self.state.models.items() if served.version == version), None)

    async def score(self, parsed: ParsedRequest, arm: Arm) -> Scored:
        try:
            proba = await self.state.models[arm].batcher.submit(parsed.columns, parsed.rows)
        except BatcherClosedError as exc:
            raise ScoringError(503, "shutting_down", str(exc), arm) from exc
        except Exception as exc:  # an inference bug is ours: say so, keep serving
            log.exception("inference failed")
            raise ScoringError(500, "inference_error", f"{type(exc).__name__}: {exc}", arm) from exc
        return Scored(arm, self.state.models[arm].version, proba, proba > 0.5)

    def served(self, scored: Scored, protocol: str, started: float) -> None:
        """Count a request answered 200 and its predicted classes."""
        n_approved = int(np.count_nonzero(scored.approved))
        approved_counter, denied_counter = self._outcomes[scored.arm]
        if n_approved:
            approved_counter.inc(n_approved)
        if len(scored.approved) - n_approved:
            denied_counter.inc(len(scored.approved) - n_approved)
        self._ok[scored.arm, protocol].inc()
        self._latency[scored.arm].observe(time.perf_counter() - started)


def predict_router(state: ServerState, scoring: Scoring) -> APIRouter:
    router = APIRouter()

    def refuse(status: int, detail: list[dict[str, Any]], arm: str = "none") -> Response:
        scoring.refused(PREDICT, status, arm)
        return _json({"detail": detail}, status)

    @router.post(
        "/predict",
        openapi_extra={
            "requestBody": {"required": True, "content": {JSON: {"schema": predict_body_json_schema()}}}
        },
    )
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        try:
            scoring.check_ready()
            parsed = parse_predict_body(await scoring.body(request))
            scored = await scoring.score(parsed, scoring.arm_for(None) or PRIMARY)
        except RequestError as exc:
            return refuse(exc.status, exc.detail)
        except ScoringError as exc:
            return refuse(exc.status, [{"type": exc.kind, "loc": [], "msg": exc.msg}], exc.arm)
        predictions: list[dict[str, Any]] = [
            {"probability_approved": p, "outcome": o}
            for p, o in zip(scored.probabilities.tolist(), scored.outcomes(), strict=True)
        ]
        for prediction, claim_id in zip(predictions, parsed.claim_ids, strict=True):
            if claim_id is not None:
                prediction["claim_id"] = claim_id
        body = state.response_prefix[scored.arm] + json.dumps(predictions).encode() + b"}"
        scoring.served(scored, PREDICT, started)
        return Response(body, media_type=JSON)

    return router


def open_inference_router(state: ServerState, scoring: Scoring) -> APIRouter:
    """The Open Inference Protocol v2 (REST): health, metadata and infer."""
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])
    name = state.config.model_name

    def error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> Response:
        return _json({"error": message, **({"details": details} if details else {})}, status)

    def unknown(model: str, version: str | None) -> Response | None:
        """404 when this server does not serve ``model`` (at ``version``)."""
        if model != name:
            return error(404, f"Model {model!r} is not served here; this server serves {name!r}")
        if version is not None and state.ready and scoring.arm_for(version) is None:
            served = ", ".join(sorted(m.version for m in state.models.values()))
            return error(
                404, f"Version {version!r} of {name!r} is not served here; served versions: {served}"
            )
        return None

    @router.get("")
    async def server_metadata() -> Response:
        return _json({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []})

    @router.get("/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @router.get("/health/ready")
    async def ready() -> Response:
        return _json({"ready": state.ready}, 200 if state.ready else 503)

    async def model_ready(model: str, version: str | None = None) -> Response:
        if (missing := unknown(model, version)) is not None:
            return missing
        return _json({"name": model, "ready": state.ready}, 200 if state.ready else 503)

    async def model_metadata(model: str, version: str | None = None) -> Response:
        if (missing := unknown(model, version)) is not None:
            return missing
        if not state.ready:
            return error(503, state.load_error or "model loading")
        versions = [version] if version else [m.version for m in state.models.values()]
        arm = scoring.arm_for(version) if version else PRIMARY
        platform = (
            "onnxruntime_onnx" if state.models[arm or PRIMARY].selection.inference == "onnx" else "sklearn"
        )
        return _json(open_inference.model_metadata(name, versions, platform))

    async def infer(request: Request, model: str, version: str | None = None) -> Response:
        started = time.perf_counter()
        if (missing := unknown(model, version)) is not None:
            scoring.refused(open_inference.PROTOCOL, 404)
            return missing
        inputs: list[str] = []
        header_length = request.headers.get("inference-header-content-length")
        try:
            scoring.check_ready()
            body = await scoring.body(request)
            if header_length is None:
                payload = load_json(body)
            else:  # the binary tensor extension
                length = int(header_length) if header_length.isdigit() else -1
                payload = open_inference.decode_binary_request(body, length)
            if isinstance(payload, dict) and isinstance(payload.get("inputs"), list):
                inputs = [str(t.get("name")) if isinstance(t, dict) else "?" for t in payload["inputs"]]
            request_ = open_inference.parse_infer_request(payload, model, version)
            scored = await scoring.score(request_.parsed, scoring.arm_for(version) or PRIMARY)
        except RequestError as exc:
            status = 400 if exc.status == 422 else exc.status
            scoring.refused(open_inference.PROTOCOL, status)
            return _json(open_inference.error_body(exc, inputs), status)
        except ScoringError as exc:
            scoring.refused(open_inference.PROTOCOL, exc.status, exc.arm)
            return error(exc.status, exc.msg)
        answer = open_inference.infer_response(
            name, scored.version, request_.request_id, request_.outputs,
            scored.probabilities.tolist(), scored.outcomes(), scored.arm,
        )  # fmt: skip
        scoring.served(scored, open_inference.PROTOCOL, started)
        return _json(answer)

    infer_body = {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": open_inference.infer_request_json_schema()}},
        }
    }
    for path in ("/models/{model}", "/models/{model}/versions/{version}"):
        router.add_api_route(f"{path}/ready", model_ready, methods=["GET"])
        router.add_api_route(path, model_metadata, methods=["GET"])
        router.add_api_route(f"{path}/infer", infer, methods=["POST"], openapi_extra=infer_body)
    return router


def mlflow_scoring_router(state: ServerState, scoring: Scoring) -> APIRouter:
    """MLflow's scoring protocol: what `mlflow models serve` answers, so its clients work."""
    router = APIRouter(tags=["MLflow scoring protocol"])

    @router.get("/ping")
    async def ping() -> Response:
        return Response(b"\n", status_code=200 if state.ready else 503, media_type="application/json")

    @router.get("/version")
    async def version() -> Response:
        return Response(SERVER_VERSION.encode(), media_type="text/plain")

    @router.post(
        "/invocations",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": mlflow_scoring.invocation_json_schema()}},
            }
        },
    )
    async def invocations(request: Request) -> Response:
        started = time.perf_counter()
        content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
        try:
            if content_type != JSON:
                raise RequestError(
                    415,
                    [
                        error_entry(
                            "content_type",
                            ["header", "content-type"],
                            f"Content-Type should be {JSON} (dataframe_split, dataframe_records, "
                            f"instances or inputs), not {content_type!r}",
                            content_type,
                        )
                    ],
                )
            scoring.check_ready()
            parsed = mlflow_scoring.parse_invocation(load_json(await scoring.body(request)))
            scored = await scoring.score(parsed, scoring.arm_for(None) or PRIMARY)
        except RequestError as exc:
            status = 400 if exc.status == 422 else exc.status
            scoring.refused(mlflow_scoring.PROTOCOL, status)
            return _json(mlflow_scoring.error_body(RequestError(status, exc.detail)), status)
        except ScoringError as exc:
            scoring.refused(mlflow_scoring.PROTOCOL, exc.status, exc.arm)
            return _json({"error_code": "SERVICE_UNAVAILABLE" if exc.status == 503 else "INTERNAL_ERROR",
                          "message": exc.msg}, exc.status)  # fmt: skip
        body = mlflow_scoring.predictions_body(
            scored.probabilities.tolist(), scored.outcomes(), parsed.claim_ids
        )
        scoring.served(scored, mlflow_scoring.PROTOCOL, started)
        return _json(body)

    return router


def create_app(config: ServerConfig, source: ModelSource | None = None) -> FastAPI:
    state = ServerState(config, source if source is not None else MlflowRegistry())
    if config.ab_challenger_version is not None:
        state.split = TrafficSplit(config.ab_traffic_percent)
        state.metrics.ab_percent.set(config.ab_traffic_percent)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.get_running_loop().create_task(load_models(state), name="model-loader")
        try:
            yield
        finally:
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            for served in state.models.values():
                await served.batcher.close()

    app = FastAPI(
        title="ClaimOps model server",
        summary=f"Settlement predictions of {config.model_ref}",
        lifespan=lifespan,
    )
    app.state.server = state
    scoring = Scoring(state)
    for router in (
        health_router(),
        ready_router(state),
        predict_router(state, scoring),
        open_inference_router(state, scoring),
        mlflow_scoring_router(state, scoring),
        metrics_router(state),
    ):
        app.include_router(router)
    return app
