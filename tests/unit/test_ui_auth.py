"""Sign-in, sessions and CSRF checks of the UI (pure parts)."""

from __future__ import annotations

from typing import Any

import bcrypt
import pytest

from claimops_ui import auth
from claimops_ui.errors import Forbidden, ReadOnly, TooManyRequests, Unauthenticated


def _hash(password: str, prefix: str = "$2y$") -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", prefix, 1)


HTPASSWD = [
    ("bcrypt-2y", f"alice:{_hash('pw')}", ["alice"]),
    ("bcrypt-2b", f"bob:{_hash('pw', '$2b$')}", ["bob"]),
    ("comment-and-blank", f"# admins\n\ncarol:{_hash('pw')}\n", ["carol"]),
    ("apr1-md5-is-refused", "dave:$apr1$abc$xyz", []),
    ("sha1-is-refused", "erin:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", []),
    ("no-colon", "frank", []),
    ("empty-hash", "grace:", []),
]


@pytest.mark.parametrize(("text", "users"), [c[1:] for c in HTPASSWD], ids=[c[0] for c in HTPASSWD])
def test_parse_htpasswd_keeps_only_bcrypt_users(text: str, users: list[str]) -> None:
    assert sorted(auth.parse_htpasswd(text)) == users


def test_verify_accepts_the_password_and_refuses_others() -> None:
    authenticator = auth.Authenticator(auth.parse_htpasswd(f"alice:{_hash('s3cret')}"))
    assert authenticator.enabled
    assert authenticator.verify("alice", "s3cret", now=0)
    assert not authenticator.verify("alice", "wrong", now=0)
    assert not authenticator.verify("nobody", "s3cret", now=0)


def test_repeated_failures_lock_the_user_out_for_a_while() -> None:
    authenticator = auth.Authenticator(auth.parse_htpasswd(f"alice:{_hash('s3cret')}"))
    for _ in range(auth.MAX_FAILURES):
        assert not authenticator.verify("alice", "guess", now=100.0)
    with pytest.raises(TooManyRequests):
        authenticator.verify("alice", "s3cret", now=101.0)
    assert authenticator.verify("alice", "s3cret", now=100.0 + auth.LOCKOUT_WINDOW + 1)


def test_missing_htpasswd_file_means_read_only(tmp_path: Any) -> None:
    assert not auth.Authenticator.from_file(tmp_path / "absent").enabled
    assert not auth.Authenticator.from_file(None).enabled


def test_start_session_replaces_the_csrf_token_and_drops_old_data() -> None:
    session: dict[str, Any] = {"csrf": "before", "other": 1}
    auth.start_session(session, "alice")
    assert session["user"] == "alice"
    assert session["csrf"] != "before"
    assert "other" not in session


ORIGINS = [
    ("no-origin", None, "ui:8000", True),
    ("same-host", "http://ui:8000", "ui:8000", True),
    ("same-host-case", "https://UI:8000", "ui:8000", True),
    ("other-host", "https://evil.example", "ui:8000", False),
    ("other-port", "http://ui:9000", "ui:8000", False),
    ("null-origin", "null", "ui:8000", False),
]


@pytest.mark.parametrize(("origin", "host", "same"), [c[1:] for c in ORIGINS], ids=[c[0] for c in ORIGINS])
def test_same_origin(origin: str | None, host: str, same: bool) -> None:
    assert auth.same_origin(origin, host) is same


MUTATIONS: list[tuple[str, dict[str, Any], str | None, str | None, bool, type[Exception] | None]] = [
    ("ok", {"user": "alice", "csrf": "t"}, "t", None, True, None),
    ("read-only", {"user": "alice", "csrf": "t"}, "t", None, False, ReadOnly),
    ("cross-site", {"user": "alice", "csrf": "t"}, "t", "https://evil.example", True, Forbidden),
    ("no-session", {"csrf": "t"}, "t", None, True, Unauthenticated),
    ("no-token", {"user": "alice", "csrf": "t"}, None, None, True, Forbidden),
    ("wrong-token", {"user": "alice", "csrf": "t"}, "u", None, True, Forbidden),
    ("session-without-token", {"user": "alice"}, "t", None, True, Forbidden),
]


@pytest.mark.parametrize(
    ("session", "token", "origin", "enabled", "error"),
    [c[1:] for c in MUTATIONS],
    ids=[c[0] for c in MUTATIONS],
)
def test_check_mutation(
    session: dict[str, Any],
    token: str | None,
    origin: str | None,
    enabled: bool,
    error: type[Exception] | None,
) -> None:
    kwargs: dict[str, Any] = {
        "session": session,
        "submitted_token": token,
        "origin": origin,
        "host": "ui:8000",
        "auth_enabled": enabled,
    }
    if error is None:
        assert auth.check_mutation(**kwargs) == "alice"
    else:
        with pytest.raises(error):
            auth.check_mutation(**kwargs)
