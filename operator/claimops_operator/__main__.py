"""`python -m claimops_operator`: run the operator (in the cluster or against $KUBECONFIG).

With ``CLAIMOPS_LEADER_ELECTION_LEASE`` set (the chart sets it), the process first waits for
the leader Lease (:mod:`.leadership`) and starts Kopf only once it holds it; a replica that
loses the Lease exits at once, so its restart comes back as a standby. Without it, the
process reconciles at once (one operator, as on a laptop).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import kopf
from aiohttp import web

from . import handlers  # also registers the handlers
from .config import OperatorConfig
from .leadership import LeaseElector, LeaseLost

log = logging.getLogger("claimops.operator")

#: Exit status of a replica that lost the Lease (the kubelet restarts it as a standby).
LOST_LEASE_EXIT = 3


async def _serve_health(port: int, elector: LeaseElector | None) -> web.AppRunner:
    """/healthz for the kubelet, a standby included (Kopf's own endpoint runs only in a leader)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "identity": elector.identity if elector else None})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


async def _run(settings: OperatorConfig) -> None:
    # Before the election: a standby's /metrics says it is not the leader.
    handlers.serve_metrics(settings.metrics_port)
    elector = handlers.leader_elector(settings)
    health = await _serve_health(settings.health_port, elector) if settings.health_port else None
    try:
        if elector is not None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):  # Kopf installs its own once it runs
                loop.add_signal_handler(signum, stop.set)
            acquire = asyncio.create_task(elector.acquire())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not acquire.done():
                acquire.cancel()
                log.info("stopped while standing by")
                return
            stopped.cancel()
        operator = asyncio.create_task(
            kopf.operator(
                standalone=True,
                clusterwide=not settings.namespaces,
                namespaces=list(settings.namespaces),
            )
        )
        if elector is None:
            await operator
            return
        keep = asyncio.create_task(elector.keep())
        await asyncio.wait({operator, keep}, return_when=asyncio.FIRST_COMPLETED)
        if keep.done() and isinstance(keep.exception(), LeaseLost):
            # Stop writing now: a standby may take over once the Lease expires. No graceful
            # Kopf shutdown, whose handlers could still write after that.
            log.error("leader election: %s; exiting", keep.exception())
            logging.shutdown()
            os._exit(LOST_LEASE_EXIT)
        keep.cancel()
        await asyncio.to_thread(elector.release)
        operator.result()
    finally:
        if health is not None:
            await health.cleanup()


def main() -> None:
    settings = OperatorConfig.from_env()  # fail fast, naming the bad variable
    kopf.configure(verbose=False, log_format=kopf.LogFormat.JSON, log_prefix=True)
    logging.getLogger("claimops").setLevel(logging.INFO)
    try:
        asyncio.run(_run(settings))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
