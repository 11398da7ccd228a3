"""Fixtures of the serving unit tests: two small fitted pipelines in an in-memory registry,
and an app serving version 1 with version 2 as a 20 % A/B challenger."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from claimops_stages.claims import generate_claims
from claimops_stages.serving.app import create_app
from claimops_stages.serving.config import ServerConfig
from claimops_stages.training import TrainingConfig, train
from tests.unit.serving_helpers import InMemoryRegistry, wait_ready


@pytest.fixture(scope="module")
def registry() -> InMemoryRegistry:
    fit = {
        v: train(
            generate_claims(2000, seed=seed), TrainingConfig(n_estimators=10, max_depth=6, n_jobs=1)
        ).pipeline
        for v, seed in (("1", 1), ("2", 2))
    }
    return InMemoryRegistry(fit, {"champion": "1"})


@pytest.fixture
def ab_client(registry: InMemoryRegistry) -> Iterator[TestClient]:
    config = ServerConfig("claims", model_alias="champion", ab_challenger_version="2", ab_traffic_percent=20)
    with TestClient(create_app(config, registry)) as client:
        wait_ready(client)
        yield client
