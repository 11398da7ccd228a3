"""Live channels: `/events` (Server-Sent Events from the Kubernetes watch), `ws /ws/logs/{run_id}`
(a run's stage logs as they grow) and `ws /ws/claims` (the claims stream)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from .. import inspector
from ..actions import RUN_NAME
from ..deps import Services, Svc
from ..errors import UiError

router = APIRouter(tags=["live"])
KEEPALIVE_SECONDS = 15.0
LOG_POLL_SECONDS = 1.0


@router.get(
    "/events",
    response_class=StreamingResponse,
    # An endless stream: `event: <plural>` lines, each with one JSON change as its data.
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="Server-Sent Events: every PipelineRun/ModelDeployment change",
)
async def events(request: Request, svc: Svc) -> StreamingResponse:
    queue = svc.events.subscribe()

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                yield f"event: {message['resource']}\ndata: {json.dumps(message)}\n\n"
        finally:
            svc.events.unsubscribe(queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/ws/logs/{run_id}")
async def ws_logs(websocket: WebSocket, run_id: str) -> None:
    svc: Services = websocket.app.state.services
    await websocket.accept()
    if not re.match(RUN_NAME, run_id):
        await websocket.send_json(
            {"error": "InvalidInput", "detail": f"{run_id!r} is not a PipelineRun name"}
        )
        await websocket.close(code=1008)
        return
    sent: dict[str, int] = {}
    try:
        while True:
            try:
                run = await run_in_threadpool(svc.kube.get_run, run_id)
            except UiError as exc:
                await websocket.send_json(exc.to_json())
                await websocket.close(code=1008 if exc.status < 500 else 1011)
                return
            status = run.get("status") or {}
            for entry in status.get("stages") or []:
                if not entry.get("job"):
                    continue
                stage = str(entry["name"])
                try:
                    log: dict[str, Any] = await run_in_threadpool(inspector.logs_for, svc, run, stage)
                except UiError:
                    continue
                text = str(log.get("text") or "")
                if len(text) > sent.get(stage, 0):
                    await websocket.send_json(
                        {"stage": stage, "source": log.get("source"), "text": text[sent.get(stage, 0) :]}
                    )
                    sent[stage] = len(text)
            await websocket.send_json(
                {"phase": status.get("phase"), "currentStage": status.get("currentStage")}
            )
            await asyncio.sleep(LOG_POLL_SECONDS)
    except (WebSocketDisconnect, RuntimeError):
        return


@router.websocket("/ws/claims")
async def ws_claims(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    await websocket.accept()
    queue = svc.claims.subscribe()
    # The client only listens; a receive that ends means it went away (no batch may come for
    # a long time while the stream is stopped, so a send would not notice).
    gone = asyncio.ensure_future(_until_disconnected(websocket))
    try:
        first = {
            "status": svc.claims.status(),
            "claims": list(svc.claims.recent),
            "drift": svc.claims.last_drift,
        }
        await websocket.send_json(first)
        while not gone.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            await websocket.send_json(getter.result())
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        gone.cancel()
        svc.claims.unsubscribe(queue)
        with contextlib.suppress(Exception):
            await websocket.close()


async def _until_disconnected(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message.get("type") == "websocket.disconnect":
                return
