"""`python -m claimops_operator`: run the operator (in the cluster or against $KUBECONFIG)."""

from __future__ import annotations

import asyncio
import logging

import kopf

from . import handlers  # noqa: F401  (registers the handlers)
from .config import OperatorConfig


def main() -> None:
    settings = OperatorConfig.from_env()  # fail fast, naming the bad variable
    kopf.configure(verbose=False, log_format=kopf.LogFormat.JSON, log_prefix=True)
    logging.getLogger("claimops").setLevel(logging.INFO)
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz"
            if settings.health_port
            else None,
        )
    )


if __name__ == "__main__":
    main()
