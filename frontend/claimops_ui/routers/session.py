"""`/auth/session`: who is signed in, and the CSRF token script clients send as X-CSRF-Token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from .. import auth
from ..deps import Svc
from ..schemas import DocumentedRoute, SessionInfo

router = APIRouter(tags=["session"], route_class=DocumentedRoute)


@router.get(
    "/auth/session",
    response_model=SessionInfo,
    summary="The session's user and CSRF token (same-origin pages only)",
)
def session(request: Request, svc: Svc) -> dict[str, Any]:
    return {
        "user": auth.session_user(request.session),
        "csrfToken": auth.csrf_token(request.session),
        "readOnly": not svc.authenticator.enabled,
        "impersonateGroup": svc.config.impersonate_group,
    }
