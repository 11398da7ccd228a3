"""The UI app through FastAPI's TestClient, with its backends unreachable (no cluster needed):
routes that need no backend work, the rest answer with a 4xx/503 JSON error, never a 500."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import bcrypt
import pytest
from fastapi.testclient import TestClient

from claimops_ui.app import create_app
from claimops_ui.config import UiConfig

SEED_PATHS = [
    "/pipeline/start",
    "/pipeline/commit",
    "/pipeline/{run_id}/status",
    "/pipeline/{run_id}/approve",
    "/pipeline/{run_id}/reject",
    "/pipeline/rollback",
    "/steps",
    "/steps/{name}/code",
    "/steps/{name}/config",
    "/mlflow/runs",
    "/mlflow/runs/{run_id}",
    "/mlflow/champion",
    "/claims/generate",
    "/claims/stream/start",
    "/claims/stream/stop",
    "/claims/drift",
    "/failures",
    "/failures/{mode}/toggle",
    "/health",
]


def _kubeconfig(path: Path) -> Path:
    # Port 9 (discard) on localhost: connections are refused at once.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": "https://127.0.0.1:9", "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(json.dumps(config))
    return path


def _config(tmp_path: Path, users: bool) -> UiConfig:
    htpasswd = None
    if users:
        htpasswd = tmp_path / "htpasswd"
        htpasswd.write_text("alice:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode() + "\n")
    key = tmp_path / "key"
    key.write_text(secrets.token_urlsafe(32))
    return UiConfig(
        namespace="ns",
        kubeconfig=str(_kubeconfig(tmp_path / "kubeconfig")),
        mlflow_tracking_uri="http://127.0.0.1:9",
        htpasswd_file=htpasswd,
        session_key_file=key,
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_config(tmp_path, users=True)), base_url="http://ui.test") as c:
        yield c


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_config(tmp_path, users=False)), base_url="http://ui.test") as c:
        yield c


def sign_in(client: TestClient) -> str:
    token = client.get("/auth/session").json()["csrfToken"]
    response = client.post(
        "/ui/login", data={"username": "alice", "password": "pw", "csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    session = client.get("/auth/session").json()
    assert session["user"] == "alice"
    assert session["csrfToken"] != token  # a new token after sign-in
    return str(session["csrfToken"])


def test_openapi_lists_every_seed_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert [p for p in SEED_PATHS if p not in paths] == []
    assert not [p for p in paths if p.startswith("/ui")]


#: Operations whose success is no JSON body: an artifact's bytes, the Server-Sent Events stream.
NOT_JSON = {"/mlflow/artifacts/{run_id}/{path}", "/events"}


def test_openapi_documents_every_response(client: TestClient) -> None:
    """Each JSON operation names its success body's schema, and every operation documents the
    error body (4XX and 503) the exception handlers write."""
    paths = client.get("/openapi.json").json()["paths"]
    undocumented, errors_undocumented = [], []
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            success = next(v for k, v in responses.items() if k.startswith("2"))
            schema = json.dumps(success.get("content", {}).get("application/json", {}).get("schema", {}))
            if path not in NOT_JSON and '"$ref"' not in schema:
                undocumented.append(f"{method.upper()} {path}")
            for status in ("4XX", "503"):
                ref = responses.get(status, {}).get("content", {}).get("application/json", {}).get("schema")
                if ref != {"$ref": "#/components/schemas/ErrorBody"}:
                    errors_undocumented.append(f"{method.upper()} {path} {status}")
    assert undocumented == []
    assert errors_undocumented == []


REQUESTS = [
    # (id, method, path, status, error code)
    ("steps", "GET", "/steps", 200, None),
    ("stage-code", "GET", "/steps/quick-train/code", 200, None),
    ("unknown-stage", "GET", "/steps/nope/code", 404, "NotFound"),
    ("stage-config-defaults", "GET", "/steps/full-train/config", 200, None),
    ("claims", "GET", "/claims/generate?rows=5&profile=severe", 200, None),
    ("claims-bad-profile", "GET", "/claims/generate?profile=extreme", 422, "InvalidInput"),
    ("drift-fresh-sample", "GET", "/claims/drift?profile=none&rows=500", 200, None),
    ("bad-run-name", "GET", "/pipeline/Not_A_Name/status", 422, "InvalidInput"),
    ("run-status-no-cluster", "GET", "/pipeline/run-abc/status", 503, "BackendUnavailable"),
    ("failures-no-cluster", "GET", "/failures", 503, "BackendUnavailable"),
    ("mlflow-bad-run-id", "GET", "/mlflow/runs/xyz", 422, "InvalidInput"),
    ("mlflow-unreachable", "GET", "/mlflow/runs", 503, "BackendUnavailable"),
    ("commit-signed-out", "POST", "/pipeline/commit", 401, "Unauthenticated"),
    ("toggle-signed-out", "POST", "/failures/SchemaValidation/toggle", 401, "Unauthenticated"),
]


@pytest.mark.parametrize(
    ("method", "path", "status", "error"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS]
)
def test_requests(client: TestClient, method: str, path: str, status: int, error: str | None) -> None:
    response = client.request(method, path)
    assert response.status_code == status, response.text
    if error is not None:
        assert response.json()["error"] == error


def test_health_reports_the_unreachable_backends(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "degraded"
    assert body["mlflow"]["ok"] is False
    assert body["kubernetes"]["errors"]


def test_signed_in_mutation_without_csrf_is_refused_and_with_it_reaches_the_backend(
    client: TestClient,
) -> None:
    token = sign_in(client)
    assert client.post("/pipeline/commit", json={}).status_code == 403
    # With the token the request passes the guard and meets the (unreachable) API server.
    response = client.post("/pipeline/commit", json={"rows": 5000}, headers={"X-CSRF-Token": token})
    assert response.status_code == 503
    assert "Kubernetes API unreachable" in response.json()["detail"]


def test_wrong_password_is_refused(client: TestClient) -> None:
    token = client.get("/auth/session").json()["csrfToken"]
    response = client.post("/ui/login", data={"username": "alice", "password": "no", "csrf_token": token})
    assert response.status_code == 401
    assert "Unknown user or wrong password" in response.text
    assert client.get("/auth/session").json()["user"] is None


def test_without_htpasswd_the_ui_is_read_only(read_only: TestClient) -> None:
    page = read_only.get("/ui/login")
    assert "Read-only" in page.text
    token = read_only.get("/auth/session").json()["csrfToken"]
    response = read_only.post("/claims/stream/stop", headers={"X-CSRF-Token": token})
    assert response.status_code == 403
    assert response.json()["error"] == "ReadOnly"


def test_pages_carry_security_headers(client: TestClient) -> None:
    response = client.get("/ui/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert 'name="csrf_token"' in response.text


def test_error_pages_for_browsers_are_html(client: TestClient) -> None:
    response = client.get("/ui/runs/run-abc", headers={"Accept": "text/html"})
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "BackendUnavailable" in response.text


#: What each asset /docs loads must be served as (by file extension).
DOCS_CONTENT_TYPES = {
    ".js": ("application/javascript", "text/javascript"),
    ".css": ("text/css",),
    ".svg": ("image/svg+xml",),
    ".json": ("application/json",),
}


def test_api_docs_load_only_same_origin_assets(client: TestClient) -> None:
    """Swagger UI at /docs works without internet access: every script, stylesheet, icon and
    the schema it loads come from the UI itself, with the right content type."""
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", page.text), "an absolute URL in /docs"
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert {Path(urlsplit(ref).path).suffix for ref in refs} == set(DOCS_CONTENT_TYPES)
    for ref in refs:
        parts = urlsplit(ref)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{ref} is not same-origin"
        assert ref.startswith("/"), ref
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        content_type = asset.headers["content-type"].split(";")[0]
        assert content_type in DOCS_CONTENT_TYPES[Path(parts.path).suffix], (ref, content_type)
    (script,) = (ref for ref in refs if ref.endswith(".js"))
    assert "SwaggerUIBundle" in client.get(script).text


def test_redoc_is_off(client: TestClient) -> None:
    """FastAPI's /redoc loads ReDoc from a CDN; the UI does not offer it."""
    assert client.get("/redoc").status_code == 404
