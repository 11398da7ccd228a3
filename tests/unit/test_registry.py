"""Champion history in model-version tags: promotion and rollback chains (MLflow's own
SQLite store in a temp dir; no server needed for the registry's logic)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from claimops_stages import registry

MODEL = "claim-settlement"


@pytest.fixture
def client(tmp_path: Path) -> MlflowClient:
    # One database per test: each starts with an empty registry.
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    return client


def _versions(client: MlflowClient, n: int, evaluated: bool = True) -> list[str]:
    versions = []
    for i in range(n):
        version = str(client.create_model_version(MODEL, source=f"file:///models/{i}").version)
        if evaluated:
            client.set_model_version_tag(MODEL, version, registry.TAG_EVALUATION_PASSED, "true")
        versions.append(version)
    return versions


def test_rollback_walks_back_through_promotions(client: MlflowClient) -> None:
    for version in _versions(client, 3):
        registry.promote(client, MODEL, version, "alice", f"cpr-{version}")
    assert registry.alias_version(client, MODEL, registry.CHAMPION) == "3"

    steps = [registry.rollback(client, MODEL, "bob", "cpr-rb").describe() for _ in range(2)]
    assert steps == ["champion: v3 -> v2", "champion: v2 -> v1"]
    with pytest.raises(registry.RegistryError, match="no previous champion"):
        registry.rollback(client, MODEL, "bob", "cpr-rb")
    assert registry.alias_version(client, MODEL, registry.CHAMPION) == "1"
    assert client.get_model_version(MODEL, "3").tags["rolled_back_by"] == "bob"


def test_promotion_refuses_an_unevaluated_version(client: MlflowClient) -> None:
    (version,) = _versions(client, 1, evaluated=False)
    with pytest.raises(registry.RegistryError, match="has not passed evaluate-vs-champion"):
        registry.promote(client, MODEL, version, "alice", "cpr-1")
    assert registry.alias_version(client, MODEL, registry.CHAMPION) is None


def test_promoting_the_champion_again_changes_nothing(client: MlflowClient) -> None:
    v1, v2 = _versions(client, 2)
    registry.promote(client, MODEL, v1, "alice", "cpr-1")
    registry.promote(client, MODEL, v2, "alice", "cpr-2")
    again = registry.promote(client, MODEL, v2, "carol", "cpr-3")
    assert again.previous == v2
    tags = client.get_model_version(MODEL, v2).tags
    assert (tags["previous_champion"], tags["promoted_by"]) == (v1, "alice")


def test_promotion_clears_the_challenger_it_promotes(client: MlflowClient) -> None:
    (version,) = _versions(client, 1)
    registry.set_challenger(client, MODEL, version)
    registry.promote(client, MODEL, version, "alice", "cpr-1")
    assert registry.alias_version(client, MODEL, registry.CHALLENGER) is None


def test_unknown_model_has_no_aliases(client: MlflowClient) -> None:
    assert registry.alias_version(client, "no-such-model", registry.CHAMPION) is None


def test_rollback_records_who_and_why_on_the_version_restored(client: MlflowClient) -> None:
    for version in _versions(client, 2):
        registry.promote(client, MODEL, version, "alice", f"cpr-{version}")
    registry.rollback(client, MODEL, "bob", "cpr-rb", reason="v2 rejects valid claims")
    restored = client.get_model_version(MODEL, "1").tags
    assert restored[registry.TAG_ROLLBACK_BY] == "bob"
    assert restored[registry.TAG_ROLLBACK_REASON] == "v2 rejects valid claims"
    assert restored["restored_from"] == "2"  # and restored_at is the rollback's time


def test_promotion_records_the_time_it_is_given(client: MlflowClient) -> None:
    (version,) = _versions(client, 1)
    registry.promote(client, MODEL, version, "alice", "cpr-1", at="2026-03-02T10:00:00+00:00")
    assert client.get_model_version(MODEL, version).tags["promoted_at"] == "2026-03-02T10:00:00+00:00"
