"""Prometheus metrics of the model server (all named ``claimops_model_server_*``).

Each app owns its registry (not the process-global one), so tests can build several apps in
one process. Label children on the hot path are bound once and cached.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX = "claimops_model_server_"
#: Sub-millisecond buckets: the fast path answers in ~1 ms, mlflow's in ~10-30 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            PREFIX + "requests",
            "Prediction requests by arm and HTTP status code (arm 'none': refused before routing).",
            ["arm", "code"],
            registry=r,
        )
        self.latency = Histogram(
            PREFIX + "request_duration_seconds",
            "Time from reading a /predict request to its response body, by arm.",
            ["arm"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            PREFIX + "predictions",
            "Predicted claims by arm and predicted class.",
            ["arm", "outcome"],
            registry=r,
        )
        self.batch_rows = Histogram(
            PREFIX + "batch_claims",
            "Claims per inference call (micro-batching merges concurrent requests).",
            ["arm"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            PREFIX + "batch_requests",
            "Requests merged into one inference call.",
            ["arm"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            PREFIX + "inference_duration_seconds",
            "Duration of one inference call.",
            ["arm"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            PREFIX + "model_info",
            "1 for each loaded model: name, version, inference path (onnx|sklearn) and fallback reason.",
            ["arm", "model_name", "model_version", "inference", "fallback_reason"],
            registry=r,
        )
        self.fallback = Gauge(
            PREFIX + "inference_fallback",
            "1 when the arm serves with scikit-learn because ONNX was not exact or not convertible.",
            ["arm"],
            registry=r,
        )
        self.max_abs_diff = Gauge(
            PREFIX + "onnx_max_abs_diff",
            "Largest |P_onnx - P_sklearn| on the check sample at load.",
            ["arm"],
            registry=r,
        )
        self.load_seconds = Gauge(
            PREFIX + "model_load_seconds",
            "Seconds to fetch, convert and check the model.",
            ["arm"],
            registry=r,
        )
        self.ready = Gauge(PREFIX + "ready", "1 once every arm's model is loaded.", registry=r)
        self.ab_percent = Gauge(
            PREFIX + "ab_traffic_percent", "Share of /predict requests routed to the challenger.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
