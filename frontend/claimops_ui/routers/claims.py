"""Synthetic claims, the live stream and its drift monitor: `/claims/*`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from claimops_stages.claims import DEFAULT_WINDOW, generate_claims

from ..claims_stream import check_profile
from ..deps import Svc, User
from ..schemas import ClaimsSample, DocumentedRoute, DriftSummary, StreamStatus
from ..views import claims_sample

router = APIRouter(tags=["claims"], route_class=DocumentedRoute)
Profile = Annotated[str, Query(pattern="^(none|mild|severe)$", description="Drift profile")]


class StreamRequest(BaseModel):
    profile: str = Field(default="none", pattern="^(none|mild|severe)$")


@router.get("/claims/generate", response_model=ClaimsSample, summary="Generate synthetic claims (no PHI)")
def generate(
    rows: Annotated[int, Query(ge=1, le=1000)] = 20,
    seed: Annotated[int, Query(ge=0, le=4_294_967_295)] = 42,
    profile: Profile = "none",
) -> dict[str, Any]:
    frame = generate_claims(rows, seed=seed, window=DEFAULT_WINDOW, drift=check_profile(profile))
    return claims_sample(frame, rows, seed, profile)


@router.get("/claims/stream", response_model=StreamStatus, summary="State of the live claims stream")
def stream_status(svc: Svc) -> dict[str, Any]:
    return svc.claims.status()


@router.post(
    "/claims/stream/start",
    response_model=StreamStatus,
    summary="Start (or re-profile) the live claims stream",
)
async def start(user: User, svc: Svc, req: Annotated[StreamRequest | None, Body()] = None) -> dict[str, Any]:
    return await svc.claims.start((req or StreamRequest()).profile, user)


@router.post("/claims/stream/stop", response_model=StreamStatus, summary="Stop the live claims stream")
async def stop(user: User, svc: Svc) -> dict[str, Any]:
    return await svc.claims.stop()


@router.get(
    "/claims/drift",
    response_model=DriftSummary,
    summary="Per-feature PSI against the champion's training reference",
)
async def drift(
    svc: Svc,
    profile: Annotated[str | None, Query(pattern="^(none|mild|severe)$")] = None,
    rows: Annotated[int, Query(ge=100, le=20000)] = 1000,
) -> dict[str, Any]:
    return await run_in_threadpool(svc.claims.drift, profile, rows)
