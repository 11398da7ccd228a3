"""The UI's one exception hierarchy. Every error a request can meet is a :class:`UiError`
subclass with an HTTP status; ``app.py`` translates them into JSON ``{"error", "detail"}``
(or an HTML page for browsers), so bad input is never a 500.
"""

from __future__ import annotations

from typing import Any


class UiError(Exception):
    """Base class: `status` is the HTTP status, `code` a stable CamelCase identifier."""

    status = 500
    code = "InternalError"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class InvalidInput(UiError):
    status = 422
    code = "InvalidInput"


class NotFound(UiError):
    status = 404
    code = "NotFound"


class Conflict(UiError):
    """The request is valid but the resource's state does not allow it (e.g. already approved)."""

    status = 409
    code = "Conflict"


class Unauthenticated(UiError):
    status = 401
    code = "Unauthenticated"


class Forbidden(UiError):
    """Signed in, but the API server (RBAC, admission) or the CSRF check refused."""

    status = 403
    code = "Forbidden"


class ReadOnly(Forbidden):
    code = "ReadOnly"


class TooManyRequests(UiError):
    status = 429
    code = "TooManyRequests"


class Unavailable(UiError):
    """A backend (Kubernetes API, MLflow, a model server) could not be reached."""

    status = 503
    code = "BackendUnavailable"
