"""The model registry side of the pipeline: aliases and their history.

``champion`` is the version production serves; ``challenger`` the candidate that passed the
evaluation gate. Promotion history lives in model-version tags, so the registry itself is
the record a rollback reads (no side database):

* on the promoted version: ``previous_champion`` (version or ""), ``promoted_at``,
  ``promoted_by``, ``promoted_by_pipeline_run``;
* on the version that lost the alias: ``demoted_at``, ``demoted_by_version``;
* on a rollback: ``rolled_back_at``/``rolled_back_by``/``rolled_back_to`` on the version
  rolled back from, and ``restored_at``/``restored_from``/``restored_by_pipeline_run`` plus
  ``claimops.rollback.by``/``claimops.rollback.reason`` (who asked, and why) on the version
  restored (its ``restored_at`` is the rollback's time);
* the release record of a promotion: ``claimops.release.digest``/``claimops.release.uri``
  (see :mod:`claimops_stages.release`).

A version restored by rollback keeps its own ``previous_champion``, so rolling back again
walks further back through the promotions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"

TAG_PREVIOUS_CHAMPION = "previous_champion"
TAG_PROMOTED_AT = "promoted_at"
TAG_PROMOTED_BY = "promoted_by"
TAG_PROMOTED_RUN = "promoted_by_pipeline_run"
TAG_EVALUATION_PASSED = "evaluation_passed"
TAG_ROLLBACK_BY = "claimops.rollback.by"
TAG_ROLLBACK_REASON = "claimops.rollback.reason"


class RegistryError(RuntimeError):
    """A registry operation that cannot be carried out (bad version, no history)."""


@dataclass(frozen=True)
class AliasMove:
    alias: str
    version: str
    previous: str | None

    def describe(self) -> str:
        before = f"v{self.previous}" if self.previous else "nothing"
        return f"{self.alias}: {before} -> v{self.version}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, or None (also when the model is not registered)."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def latest_version(client: MlflowClient, name: str) -> str | None:
    versions = client.search_model_versions(f"name = '{name}'")
    return str(max(int(v.version) for v in versions)) if versions else None


def version_tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    try:
        return dict(client.get_model_version(name, version).tags)
    except MlflowException as exc:
        raise RegistryError(f"model {name} has no version {version}") from exc


def set_challenger(client: MlflowClient, name: str, version: str) -> AliasMove:
    previous = alias_version(client, name, CHALLENGER)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return AliasMove(CHALLENGER, version, previous)


def check_promotable(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    """The version's tags; RegistryError unless it passed evaluate-vs-champion."""
    tags = version_tags(client, name, version)
    if tags.get(TAG_EVALUATION_PASSED) != "true":
        raise RegistryError(f"version {version} of {name} has not passed evaluate-vs-champion")
    return tags


def promote(
    client: MlflowClient,
    name: str,
    version: str,
    promoted_by: str,
    pipeline_run: str,
    at: str | None = None,
) -> AliasMove:
    """Point `champion` at `version`, recording the previous champion on it. `at`: the time
    to record (the release record's promotedAt), else now."""
    check_promotable(client, name, version)
    previous = alias_version(client, name, CHAMPION)
    if previous == version:
        return AliasMove(CHAMPION, version, previous)  # promoting twice is a no-op
    now = at or utc_now()
    # History first, alias last: if anything fails before the move, the champion is untouched
    # and the tags merely describe a promotion that will be retried.
    client.set_model_version_tag(name, version, TAG_PREVIOUS_CHAMPION, previous or "")
    client.set_model_version_tag(name, version, TAG_PROMOTED_AT, now)
    client.set_model_version_tag(name, version, TAG_PROMOTED_BY, promoted_by)
    client.set_model_version_tag(name, version, TAG_PROMOTED_RUN, pipeline_run)
    client.set_registered_model_alias(name, CHAMPION, version)
    if previous:
        client.set_model_version_tag(name, previous, "demoted_at", now)
        client.set_model_version_tag(name, previous, "demoted_by_version", version)
    if alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    return AliasMove(CHAMPION, version, previous)


def rollback(
    client: MlflowClient, name: str, requested_by: str, pipeline_run: str, reason: str = ""
) -> AliasMove:
    """Point `champion` back at the version it replaced; `reason` is recorded on the version
    restored."""
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"model {name} has no champion to roll back from")
    target = version_tags(client, name, current).get(TAG_PREVIOUS_CHAMPION) or ""
    if not target:
        raise RegistryError(f"champion v{current} of {name} has no previous champion")
    version_tags(client, name, target)  # fails clearly if that version was deleted
    now = utc_now()
    client.set_model_version_tag(name, current, "rolled_back_at", now)
    client.set_model_version_tag(name, current, "rolled_back_by", requested_by)
    client.set_model_version_tag(name, current, "rolled_back_to", target)
    client.set_model_version_tag(name, target, "restored_at", now)
    client.set_model_version_tag(name, target, "restored_from", current)
    client.set_model_version_tag(name, target, "restored_by_pipeline_run", pipeline_run)
    # Always set: a version restored before keeps no stale reason from that rollback.
    client.set_model_version_tag(name, target, TAG_ROLLBACK_BY, requested_by)
    client.set_model_version_tag(name, target, TAG_ROLLBACK_REASON, reason)
    client.set_registered_model_alias(name, CHAMPION, target)
    return AliasMove(CHAMPION, target, current)
