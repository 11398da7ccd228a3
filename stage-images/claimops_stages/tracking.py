"""MLflow client setup with bounded retries, and how an unreachable MLflow is recognised.

MLflowUnavailable has two shapes, and they are handled differently:

* MLflow is down when a stage starts (a restart of its pod takes 80-90 s on kind): before any
  work, :func:`probe` asks the server's ``/health`` with short timeouts and a capped backoff
  for up to :data:`PROBE_PATIENCE_SECONDS`, so the stage rides out a restart instead of
  failing. Only an outage longer than that is reported.
* MLflow goes away mid-stage: MLflow's client would retry 7 times over about four minutes by
  default; every request runs with a small retry budget instead, so the attempt fails within
  seconds and the operator's retry (whose probe then waits for the server) takes over.

Failure injection ``MLflowConnection`` points the stage at an address where nothing listens
(:func:`unreachable_uri`), so the probe fails the way a real outage does; that address never
comes back, so its probe gives up after :data:`INJECTED_PATIENCE_SECONDS`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

import requests

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"

log = logging.getLogger(__name__)

#: Retry budget of every MLflow client request after the probe succeeded. Timeouts are
#: generous because model uploads go through the same client.
CLIENT_RETRY_ENV: Mapping[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
#: How long a starting stage waits for MLflow's /health before it reports MLflowUnavailable:
#: longer than an MLflow pod restart (80-90 s on kind), well inside a stage's deadline.
PROBE_PATIENCE_SECONDS = 150.0
#: The injected outage's address is dead for good: waiting would only slow the demonstration.
INJECTED_PATIENCE_SECONDS = 3.0
PROBE_TIMEOUT = (2.0, 4.0)  # (connect, read) seconds
PROBE_BACKOFF_FIRST, PROBE_BACKOFF_MAX = 1.0, 10.0


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


def probe(uri: str, patience: float = PROBE_PATIENCE_SECONDS) -> None:
    """Return once the server answers /health; MLflowUnavailableError when it has not for
    `patience` seconds (http URIs only). There is always at least one request."""
    if not uri.startswith(("http://", "https://")):
        return  # a local store (file:, sqlite:) is always "reachable"
    started = time.monotonic()
    delay = PROBE_BACKOFF_FIRST
    attempts = 0
    while True:
        attempts += 1
        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT)
            if response.status_code == 200:
                if attempts > 1:
                    log.info("MLflow at %s answers after %.0f s", uri, time.monotonic() - started)
                return
            last_error = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last_error = type(exc).__name__ + ": " + str(exc).split("\n")[0][:200]
        waited = time.monotonic() - started
        if waited + delay > patience:
            break
        if attempts == 1:
            log.warning("MLflow at %s does not answer (%s); waiting up to %.0f s", uri, last_error, patience)
        time.sleep(delay)
        delay = min(delay * 2, PROBE_BACKOFF_MAX)
    raise MLflowUnavailableError(
        f"MLflow at {uri} unreachable for {waited:.0f} s ({attempts} attempts; last: {last_error})"
    )


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
