"""Sign-in, sessions and CSRF.

* Users and bcrypt hashes come from an htpasswd file mounted from a Secret
  (``CLAIMOPS_UI_HTPASSWD_FILE``). There is no default password: without the file the UI is
  read-only and says so on every page.
* The session is a cookie signed with the key in ``CLAIMOPS_UI_SESSION_KEY_FILE`` (Starlette's
  SessionMiddleware, itsdangerous); it holds the user name and the CSRF token only.
* Every mutation needs a signed-in user and the session's CSRF token, sent as the form field
  ``csrf_token`` or the ``X-CSRF-Token`` header (synchronizer-token pattern); a request whose
  ``Origin`` names another site is refused before the token is even looked at.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bcrypt

from .errors import Forbidden, ReadOnly, TooManyRequests, Unauthenticated

log = logging.getLogger("claimops.ui.auth")

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_USER = "user"
SESSION_CSRF = "csrf"
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
#: Sign-in attempts allowed per user name within LOCKOUT_WINDOW seconds.
MAX_FAILURES = 5
LOCKOUT_WINDOW = 300.0
#: Compared against when the user is unknown, so the answer takes as long either way.
_DUMMY_HASH = bcrypt.hashpw(b"claimops-no-such-user", bcrypt.gensalt(rounds=10))


def parse_htpasswd(text: str) -> dict[str, bytes]:
    """`user:hash` lines; only bcrypt hashes count (htpasswd -B), others are skipped loudly."""
    users: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            log.warning("htpasswd line %d is not user:hash; ignored", number)
            continue
        if not hashed.startswith(BCRYPT_PREFIXES):
            log.warning("htpasswd user %r has no bcrypt hash (use htpasswd -B); ignored", user)
            continue
        users[user] = hashed.encode()
    return users


def load_session_key(path: Path | None) -> str:
    """The signing key; without a file a random one (sessions then end when the process does)."""
    if path is not None:
        key = path.read_text().strip()
        if len(key) < 16:
            raise ValueError(f"session key in {path} is shorter than 16 characters")
        return key
    log.warning("no CLAIMOPS_UI_SESSION_KEY_FILE: sessions use a random key and end at restart")
    return secrets.token_urlsafe(32)


@dataclass
class Authenticator:
    users: Mapping[str, bytes]
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_file(cls, path: Path | None) -> Authenticator:
        if path is None or not path.exists():
            if path is not None:
                log.warning("htpasswd file %s does not exist: the UI is read-only", path)
            return cls({})
        return cls(parse_htpasswd(path.read_text()))

    @property
    def enabled(self) -> bool:
        """False when nobody can sign in: the UI is read-only."""
        return bool(self.users)

    def verify(self, user: str, password: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._failures.get(user, []) if now - t < LOCKOUT_WINDOW]
            self._failures[user] = recent
            if len(recent) >= MAX_FAILURES:
                raise TooManyRequests(
                    f"too many failed sign-ins for {user!r}; try again in {int(LOCKOUT_WINDOW / 60)} minutes"
                )
        hashed = self.users.get(user)
        ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH) and hashed is not None
        if not ok:
            with self._lock:
                self._failures.setdefault(user, []).append(now)
        return ok


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token, created on first use."""
    token = session.get(SESSION_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[SESSION_CSRF] = token
    return token


def start_session(session: MutableMapping[str, Any], user: str) -> None:
    """A fresh session for `user`: a new CSRF token, nothing carried over from before sign-in."""
    session.clear()
    session[SESSION_USER] = user
    session[SESSION_CSRF] = secrets.token_urlsafe(32)


def session_user(session: Mapping[str, Any]) -> str | None:
    user = session.get(SESSION_USER)
    return user if isinstance(user, str) and user else None


def same_origin(origin: str | None, host: str | None) -> bool:
    """True unless `origin` names another host than the one the request was sent to."""
    if not origin:
        return True  # non-browser clients send no Origin; the CSRF token still applies
    if origin == "null" or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def check_mutation(
    *,
    session: Mapping[str, Any],
    submitted_token: str | None,
    origin: str | None,
    host: str | None,
    auth_enabled: bool,
) -> str:
    """The signed-in user allowed to make this mutation, or an exception saying why not."""
    if not auth_enabled:
        raise ReadOnly("the UI is read-only: no htpasswd file is configured (CLAIMOPS_UI_HTPASSWD_FILE)")
    if not same_origin(origin, host):
        raise Forbidden(f"cross-site request refused (Origin {origin})")
    user = session_user(session)
    if user is None:
        raise Unauthenticated("sign in first")
    expected = session.get(SESSION_CSRF)
    if (
        not isinstance(expected, str)
        or not submitted_token
        or not hmac.compare_digest(expected, submitted_token)
    ):
        raise Forbidden("missing or wrong CSRF token")
    return user
