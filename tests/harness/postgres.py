"""A throwaway PostgreSQL server (Debian's `postgresql` package) on 127.0.0.1 for MLflow's
backend store.

PostgreSQL refuses to run as root, so initdb and the server run as the `postgres` user
(created by the Debian package), in a data directory that user owns. The MLflow role gets a
generated password and connects over TCP with scram-sha-256, like a real deployment.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.chart import mlflow_backend_scheme
from tests.harness.control_plane import free_port
from tests.harness.mlflow_server import ServiceError, ServiceOwner, ServiceProcess

OS_USER = "postgres"
DATABASE = "mlflow"
ROLE = "mlflow"


def bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin (Debian does not put initdb on PATH)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    if not candidates:
        raise ServiceError("PostgreSQL is not installed: apt-get install -y postgresql")
    return candidates[-1].parent


@dataclass
class Postgres(ServiceOwner):
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    root: Path | None = None
    service: ServiceProcess | None = None

    @property
    def uri(self) -> str:
        """MLflow's backend-store URI, with the scheme (SQLAlchemy driver) of the chart's MLflow:
        the service tests then load the driver the installed product loads."""
        scheme = mlflow_backend_scheme("external")
        return f"{scheme}://{ROLE}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None
        return self.root / "socket"

    def start(self, timeout: float = 60) -> Postgres:
        binaries = bin_dir()
        # Outside pytest's root-only tmp dirs: the postgres user must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="claimops-pg-"))
        data = self.root / "data"
        self.socket_dir.mkdir()
        shutil.chown(self.root, OS_USER, OS_USER)
        shutil.chown(self.socket_dir, OS_USER, OS_USER)
        subprocess.run(
            [
                str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-sync",
                "--auth-local=trust", "--auth-host=scram-sha-256",
            ],
            user=OS_USER, group=OS_USER, cwd=self.root, capture_output=True, check=True,
        )  # fmt: skip
        argv = [
            str(binaries / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.socket_dir),
            "-c", "listen_addresses=127.0.0.1",
            # A test database: durability is not worth the disk syncs.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        self.service = ServiceProcess("postgres", argv, self.root / "postgres.log", user=OS_USER).start()
        self.service.wait_until(self._accepts_connections, timeout)
        self._create_database()
        return self

    def _psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [str(bin_dir() / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
             "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            user=OS_USER, group=OS_USER, cwd=self.root, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise ServiceError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def _accepts_connections(self) -> bool:
        try:
            return self._psql("SELECT 1") == "1"
        except ServiceError:
            return False

    def _create_database(self) -> None:
        self._psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
        self._psql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")

    def query(self, sql: str) -> str:
        """Run SQL in the MLflow database as the superuser (for test assertions)."""
        return self._psql(sql, DATABASE)

    def stop(self) -> None:
        super().stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    server = Postgres()
    try:
        yield server.start()
    finally:
        server.stop()
