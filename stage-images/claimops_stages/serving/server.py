"""Process entry point: structured logs, then uvicorn serving the app."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence

from claimops_stages.serving.config import parse_args


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what the cluster's log collectors parse without rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    configure_logging()
    # The GIL switch interval bounds how long the inference thread waits for the GIL when ONNX
    # Runtime returns while the event loop is busy. Python's 5 ms default measured as well as
    # 0.5 ms on two busy cores, so it stays; the flag is there for tuning on other machines.
    sys.setswitchinterval(config.gil_switch_ms / 1000)
    # No progress bars in the pod's log (mlflow draws one per artifact download).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import uvicorn
    from prometheus_client import disable_created_metrics

    # `*_created` series double the exposition for no use (Prometheus tracks resets itself).
    disable_created_metrics()

    from claimops_stages.serving.app import create_app

    logging.getLogger("claimops.serving").info(
        "serving %s on %s:%d (A/B: %s)",
        config.model_ref,
        config.host,
        config.port,
        f"v{config.ab_challenger_version} at {config.ab_traffic_percent:g} %"
        if config.ab_challenger_version
        else "off",
    )
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        # Per-request access logs cost more than a prediction; /metrics counts requests.
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    return 0
