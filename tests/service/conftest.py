"""Fixtures of the service tests: real `mlflow server` processes (SQLite; PostgreSQL + MinIO),
and a runner that starts stages exactly as a Job does: `python -m claimops_stages <stage>`
in a fresh process, result read back from the termination-message file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import pytest
from mlflow.tracking import MlflowClient

from claimops_stages.contract import TERMINATION_MESSAGE_PATH_ENV, StageInputs, StageResult
from claimops_stages.registry import CHALLENGER, CHAMPION, alias_version
from tests.harness.mlflow_server import MlflowServer, running_mlflow
from tests.harness.object_store import MinioServer, running_minio
from tests.harness.postgres import Postgres, running_postgres

#: The pipeline-flow tests own this model name (and its experiment) on the shared servers;
#: other service tests register models under their own names.
MODEL = "claim-settlement"
ARTIFACT_BUCKET = "claimops-artifacts"
#: Small but real: enough claims for an AUC well above the gate, a few seconds per stage.
BASE_INPUTS = StageInputs(
    model_name=MODEL, rows=6000, seed=42, n_estimators=40, max_depth=10, quick_sample_fraction=0.5
)
#: The stages a commit goes through, in the operator's order (manual approval, staging and
#: shadow are not CLI stages).
COMMIT_STAGES = (
    "ci-tests",
    "data-validation",
    "quick-train",
    "mlflow-log",
    "full-train",
    "evaluate-vs-champion",
    "promote-production",
)


@dataclass
class StageRun:
    stage: str
    exit_code: int
    result: StageResult
    stdout: str
    #: champion/challenger right after the stage (filled in by run_commit).
    aliases_after: dict[str, str | None] = field(default_factory=dict)


@dataclass
class StageRunner:
    """Runs stages against one MLflow server, the way the operator's Jobs do."""

    tracking_uri: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, stage: str, inputs: StageInputs) -> StageRun:
        message = self.workdir / f"termination-{stage}-{os.getpid()}.json"
        message.unlink(missing_ok=True)
        env = {
            **os.environ,
            **self.env,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            TERMINATION_MESSAGE_PATH_ENV: str(message),
        }
        done = subprocess.run(
            [sys.executable, "-m", "claimops_stages", stage, *inputs.to_args()],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert message.exists(), (
            f"{stage} wrote no termination message:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        return StageRun(stage, done.returncode, StageResult.from_json(message.read_text()), done.stdout)

    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    def load_model(self, model_uri: str) -> Any:
        """Load a registered model from this server (as the model server will)."""
        mlflow.set_tracking_uri(self.tracking_uri)
        return mlflow.sklearn.load_model(model_uri)

    def aliases(self, model: str = MODEL) -> dict[str, str | None]:
        client = self.client()
        return {alias: alias_version(client, model, alias) for alias in (CHAMPION, CHALLENGER)}

    def run_commit(self, inputs: StageInputs) -> dict[str, StageRun]:
        """One commit through the pipeline; stops at the first failed stage, like the operator,
        feeding each stage what earlier ones reported."""
        runs: dict[str, StageRun] = {}
        for stage in COMMIT_STAGES:
            run = self(stage, inputs)
            run.aliases_after = self.aliases()
            runs[stage] = run
            if run.exit_code != 0:
                break
            if stage == "mlflow-log":
                inputs = replace(inputs, ci_run_id=run.result.mlflow_run_id)
            if stage == "full-train":
                inputs = replace(inputs, candidate_version=run.result.model_version)
        return runs


def commit_inputs(run: str, sha: str, **overrides: object) -> StageInputs:
    return replace(BASE_INPUTS, run=run, commit_sha=sha, requested_by="service-test", **overrides)  # type: ignore[arg-type]


#: Each commit's stage runs by stage name, under "first" and "second".
Commits = dict[str, dict[str, StageRun]]


def run_two_commits(runner: StageRunner, first: tuple[str, str], second: tuple[str, str]) -> Commits:
    """Every stage for two commits, given as (run, sha): the second changes the model (more
    trees), not the data."""
    return {
        "first": runner.run_commit(commit_inputs(*first)),
        "second": runner.run_commit(commit_inputs(*second, n_estimators=60)),
    }


@pytest.fixture(scope="session")
def sqlite_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    workdir = tmp_path_factory.mktemp("mlflow-sqlite")
    with running_mlflow(f"sqlite:///{workdir}/mlflow.db", str(workdir / "artifacts"), workdir) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    with running_minio(tmp_path_factory.mktemp("minio")) as server:
        server.create_bucket(ARTIFACT_BUCKET)
        yield server


@pytest.fixture(scope="session")
def postgres_s3_mlflow(
    postgres: Postgres, minio: MinioServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    workdir = tmp_path_factory.mktemp("mlflow-postgres")
    with running_mlflow(
        postgres.uri, f"s3://{ARTIFACT_BUCKET}/mlflow", workdir, minio.server_env()
    ) as server:
        yield server


@pytest.fixture(scope="module")
def sqlite_runner(sqlite_mlflow: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> StageRunner:
    return StageRunner(sqlite_mlflow.url, tmp_path_factory.mktemp("stages-sqlite"))


@pytest.fixture(scope="module")
def postgres_runner(
    postgres_s3_mlflow: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> StageRunner:
    return StageRunner(postgres_s3_mlflow.url, tmp_path_factory.mktemp("stages-postgres"))
