"""Shared dependencies: the services an app instance holds, the mutation guard, and the
`Annotated` aliases routers declare them (and the common path/query parameters) with."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.templating import Jinja2Templates

from . import auth
from .actions import RUN_NAME
from .auth import Authenticator
from .claims_stream import ClaimsStream
from .config import UiConfig
from .kube import KubeGateway
from .mlflow_gateway import MlflowGateway

log = logging.getLogger("claimops.ui")
TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


class EventHub:
    """Fans watch events out from the informer threads to every open page (SSE)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=500)
        with self._lock:
            self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._subscribers.discard(queue)

    def publish(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        """Called from informer threads."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        meta = obj.get("metadata", {})
        status = obj.get("status") or {}
        message = {
            "resource": plural,
            "type": kind,
            "name": meta.get("name"),
            "resourceVersion": meta.get("resourceVersion"),
            "phase": status.get("phase"),
            "stages": {s.get("name"): s.get("state") for s in status.get("stages") or []},
        }
        with self._lock:
            queues = list(self._subscribers)
        for queue in queues:
            loop.call_soon_threadsafe(self._offer, queue, message)

    @staticmethod
    def _offer(queue: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
        if queue.full():  # a stalled page drops its oldest event rather than the hub blocking
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
        queue.put_nowait(message)


@dataclass
class Services:
    config: UiConfig
    kube: KubeGateway
    mlflow: MlflowGateway
    authenticator: Authenticator
    claims: ClaimsStream
    events: EventHub = field(default_factory=EventHub)
    templates: Jinja2Templates = field(default_factory=lambda: Jinja2Templates(directory=str(TEMPLATES_DIR)))

    def __post_init__(self) -> None:
        self.templates.env.filters["tojson_pretty"] = lambda v: json.dumps(
            v, indent=2, sort_keys=True, default=str
        )


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def current_user(request: Request) -> str | None:
    return auth.session_user(request.session)


async def mutation_user(request: Request) -> str:
    """The signed-in user a mutation is made as; refuses read-only mode, cross-site requests,
    missing sessions and a missing/wrong CSRF token (form field or X-CSRF-Token header)."""
    token = request.headers.get(auth.CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if token is None and content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(auth.CSRF_FIELD)
        token = value if isinstance(value, str) else None
    return auth.check_mutation(
        session=request.session,
        submitted_token=token,
        origin=request.headers.get("origin"),
        host=request.headers.get("host"),
        auth_enabled=services(request).authenticator.enabled,
    )


# --------------------------------------------------------------------------------------------
# What routers declare (defined once, so every route validates the same way)

#: The app's services.
Svc = Annotated[Services, Depends(services)]
#: The user a mutation is made as (refuses requests that fail the mutation guard).
User = Annotated[str, Depends(mutation_user)]
#: A PipelineRun name in the path (the CRD limits names to 40 characters).
RunName = Annotated[str, PathParam(pattern=RUN_NAME, max_length=40, description="PipelineRun name")]
