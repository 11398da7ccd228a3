"""The model server app in-process (Starlette's TestClient) with models from an in-memory
registry (a real ModelSource, not a mock): helpers shared by the serving unit tests; the
fixtures `registry` and `ab_client` are in conftest.py."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from claimops_stages.claims import generate_claims
from claimops_stages.training import model_frame


class InMemoryRegistry:
    """Fitted pipelines by version, aliases by name; `broken` makes every load fail."""

    def __init__(self, versions: dict[str, Any], aliases: dict[str, str], broken: bool = False) -> None:
        self.versions, self.aliases, self.broken = versions, aliases, broken

    def resolve(self, name: str, version: str | None, alias: str | None) -> str:
        return version if version is not None else self.aliases[str(alias)]

    def load(self, name: str, version: str) -> Any:
        if self.broken:
            raise ConnectionError("registry unreachable")
        return self.versions[version]


CLAIMS: list[dict[str, Any]] = [
    {**c, "patient_age": int(c["patient_age"])}
    for c in model_frame(generate_claims(5, seed=11)).to_dict("records")
]


def wait_ready(client: TestClient, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/ready")
        if response.status_code == 200:
            return dict(response.json())
        time.sleep(0.05)
    raise AssertionError(f"not ready: {response.json()}")


def metric(text: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))
