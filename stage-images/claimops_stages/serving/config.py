"""Command line of the model server (the ModelDeployment controller starts it this way)::

    python -m claimops_stages.serving --model-name NAME (--model-version N | --model-alias A)
        [--port P] [--host H] [--ab-challenger-version V --ab-traffic-percent PCT]
        [--inference auto|sklearn] [--inference-threads T] [--max-batch-claims N]
        [--batch-wait-ms MS]
        [--inline-batch-claims N] [--gil-switch-ms MS]

The port defaults to ``$CLAIMOPS_PORT``, else 8080; MLflow is ``$MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

PORT_ENV = "CLAIMOPS_PORT"
DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"  # the pod's address: the Service reaches it from other nodes


@dataclass(frozen=True)
class ServerConfig:
    model_name: str
    model_version: str | None = None
    model_alias: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    ab_challenger_version: str | None = None
    ab_traffic_percent: float = 0.0
    inference: Literal["auto", "sklearn"] = "auto"
    #: ONNX Runtime intra-op threads. One: on two cores the other core parses HTTP, and
    #: micro-batching (not intra-op parallelism) is what scales with load.
    inference_threads: int = 1
    #: Largest merged batch (claims) of one inference call.
    max_batch_claims: int = 1024
    batch_wait_ms: float = 0.0
    #: Batches of at most this many claims run on the event loop instead of the worker thread.
    inline_batch_claims: int = 4
    #: The interpreter's GIL switch interval (ms); see server.py.
    gil_switch_ms: float = 5.0

    @property
    def model_ref(self) -> str:
        return (
            f"{self.model_name}/{self.model_version}"
            if self.model_version
            else f"{self.model_name}@{self.model_alias}"
        )


def _percent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not within 0..100")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parse_args(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> ServerConfig:
    environ = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="python -m claimops_stages.serving", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-name", required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-version", help="registered version number to serve")
    which.add_argument("--model-alias", help="registry alias to serve (resolved once, at start)")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=int(environ.get(PORT_ENV) or DEFAULT_PORT))
    parser.add_argument(
        "--ab-challenger-version", help="version that receives --ab-traffic-percent of traffic"
    )
    parser.add_argument("--ab-traffic-percent", type=_percent, default=None)
    parser.add_argument("--inference", choices=("auto", "sklearn"), default="auto")
    parser.add_argument("--inference-threads", type=_positive_int, default=1)
    parser.add_argument("--max-batch-claims", type=_positive_int, default=1024)
    parser.add_argument("--batch-wait-ms", type=float, default=0.0)
    parser.add_argument("--inline-batch-claims", type=int, default=4)
    parser.add_argument("--gil-switch-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    if (args.ab_challenger_version is None) != (args.ab_traffic_percent is None):
        parser.error("--ab-challenger-version and --ab-traffic-percent go together")
    if args.model_version is not None and args.model_version == args.ab_challenger_version:
        parser.error("--ab-challenger-version must differ from --model-version")
    # Every option's dest is the name of a ServerConfig field (a new option without its field
    # fails here, at start), so the parsed namespace is the config; only the A/B share has an
    # "unset" of its own (None, checked above) that the config stores as 0.
    return ServerConfig(**{**vars(args), "ab_traffic_percent": args.ab_traffic_percent or 0.0})
