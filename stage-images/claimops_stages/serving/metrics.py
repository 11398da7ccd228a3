"""Prometheus metrics of the model server (all named ``claimops_model_server_*``).

Each app owns its registry (not the process-global one), so tests can build several apps in
one process. Label children on the hot path are bound once and cached.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        self.requests = self._counter(
            "requests",
            "Prediction requests by arm, HTTP status code and protocol (predict: /predict, v2: the Open "
            "Inference Protocol, mlflow: /invocations; arm 'none': refused before routing).",
            ["arm", "code", "protocol"],
        )
        self.latency = self._histogram(
            "request_duration_seconds",
            "Time from reading a prediction request (any protocol) to its response body, by arm.",
            LATENCY_BUCKETS,
        )
        self.predictions = self._counter(
            "predictions", "Predicted claims by arm and predicted class.", ["arm", "outcome"]
        )
        self.batch_rows = self._histogram(
            "batch_claims",
            "Claims per inference call (micro-batching merges concurrent requests).",
            BATCH_BUCKETS,
        )
        self.batch_requests = self._histogram(
            "batch_requests", "Requests merged into one inference call.", BATCH_BUCKETS
        )
        self.inference_seconds = self._histogram(
            "inference_duration_seconds", "Duration of one inference call.", LATENCY_BUCKETS
        )
        self.model_info = self._gauge(
            "model_info",
            "1 for each loaded model: name, version, inference path (onnx|sklearn) and fallback reason.",
            ["arm", "model_name", "model_version", "inference", "fallback_reason"],
        )
        self.fallback = self._gauge(
            "inference_fallback",
            "1 when the arm serves with scikit-learn because ONNX was not exact or not convertible.",
            ["arm"],
        )
        self.max_abs_diff = self._gauge(
            "onnx_max_abs_diff", "Largest |P_onnx - P_sklearn| on the check sample at load.", ["arm"]
        )
        self.load_seconds = self._gauge(
            "model_load_seconds", "Seconds to fetch, convert and check the model.", ["arm"]
        )
        self.ready = self._gauge("ready", "1 once every arm's model is loaded.")
        self.ab_percent = self._gauge(
            "ab_traffic_percent", "Share of /predict requests routed to the challenger."
        )

    # Every metric is named PREFIX + name and registered in this app's own registry (see the
    # module docstring); these builders say so once instead of once per metric.

    def _counter(self, name: str, documentation: str, labelnames: Sequence[str]) -> Counter:
        return Counter(PREFIX + name, documentation, labelnames, registry=self.registry)

    def _histogram(self, name: str, documentation: str, buckets: Sequence[float]) -> Histogram:
        """A histogram per arm: every histogram of the server is observed per arm."""
        return Histogram(PREFIX + name, documentation, ["arm"], buckets=buckets, registry=self.registry)

    def _gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        return Gauge(PREFIX + name, documentation, labelnames, registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
