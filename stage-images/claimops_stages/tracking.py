"""MLflow client setup with bounded retries, and how an unreachable MLflow is recognised.

MLflow's client retries a failed request 7 times with exponential backoff by default (about
four minutes). A stage Job must fail fast instead, so the operator can report it: before any
work, :func:`probe` asks the server's ``/health`` a few times with short timeouts (at most
about 20 s in all), and every later request runs with a small retry budget.

Failure injection ``MLflowConnection`` points the stage at an address where nothing listens
(:func:`unreachable_uri`), so the probe fails the way a real outage does.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import requests

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"

#: Retry budget of every MLflow client request after the probe succeeded. Timeouts are
#: generous because model uploads go through the same client.
CLIENT_RETRY_ENV: Mapping[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
PROBE_ATTEMPTS = 3
PROBE_TIMEOUT = (2.0, 4.0)  # (connect, read) seconds
PROBE_BACKOFF = 1.0


class MLflowUnavailableError(RuntimeError):
    """The tracking server cannot be reached (reported as reason MLflowUnavailable)."""


def configure_client(env: Mapping[str, str] | None = None) -> None:
    """Set the client's retry budget unless the Job's environment already chose one."""
    for key, value in (env or CLIENT_RETRY_ENV).items():
        os.environ.setdefault(key, value)


def tracking_uri() -> str:
    return os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


def unreachable_uri() -> str:
    """An http URI on this host where nothing listens (a port just bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def probe(uri: str, attempts: int = PROBE_ATTEMPTS) -> None:
    """Fail with MLflowUnavailableError unless the server answers /health (http URIs only)."""
    if not uri.startswith(("http://", "https://")):
        return  # a local store (file:, sqlite:) is always "reachable"
    last_error = ""
    for attempt in range(attempts):
        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last_error = type(exc).__name__ + ": " + str(exc).split("\n")[0][:200]
        if attempt + 1 < attempts:
            time.sleep(PROBE_BACKOFF * 2**attempt)
    raise MLflowUnavailableError(f"MLflow at {uri} unreachable after {attempts} attempts ({last_error})")


def unavailable_message(exc: BaseException) -> str:
    """What a stage reports when MLflow went away: the error's first line, and, when the
    server itself answered 500 on an artifact upload or download, that its artifact store
    (bucket missing, full or read-only) is the likely cause rather than the server."""
    first = str(exc).split("\n")[0]
    if "mlflow-artifacts" in first and "500" in first:
        return (
            "MLflow's artifact store failed (HTTP 500 from the server's artifact proxy: is its "
            f"bucket missing, full or read-only?): {first}"
        )[:500]
    return first[:500]


def is_connection_error(exc: BaseException) -> bool:
    """True when `exc` (or its cause) means the server went away mid-stage."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MLflowUnavailableError | requests.ConnectionError | requests.Timeout):
            return True
        text = str(seen)
        if "Max retries exceeded" in text or "Connection refused" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
