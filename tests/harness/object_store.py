"""A real S3-compatible object store on 127.0.0.1: MinIO, built from the Go module proxy by
tests/cluster/build.sh (wrapper module tests/cluster/minio) into
~/.cache/claimops/bin/minio-<MINIO_VERSION>/minio.

The root credentials are generated per start; MLflow's server gets them (and the endpoint)
through the standard AWS/MLflow environment variables and talks to MinIO with boto3.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.control_plane import cache_dir, free_port, pinned_versions
from tests.harness.mlflow_server import ServiceError, ServiceOwner, ServiceProcess, http_ok

BUILD_COMMAND = "tests/cluster/build.sh"
REGION = "us-east-1"


def minio_binary() -> Path:
    path = cache_dir() / "bin" / f"minio-{pinned_versions()['MINIO_VERSION']}" / "minio"
    if not os.access(path, os.X_OK):
        raise ServiceError(f"MinIO is not built: {path} is missing. Build it with `{BUILD_COMMAND}`.")
    return path


@dataclass
class MinioServer(ServiceOwner):
    workdir: Path
    port: int = field(default_factory=free_port)
    access_key: str = field(default_factory=lambda: "claimops-" + secrets.token_hex(4))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    service: ServiceProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> MinioServer:
        data = self.workdir / "minio-data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(minio_binary()), "server", str(data),
            "--address", f"127.0.0.1:{self.port}", "--console-address", f"127.0.0.1:{free_port()}",
        ]  # fmt: skip
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        }
        self.service = ServiceProcess("minio", argv, self.workdir / "minio.log", env).start()
        self.service.wait_until(lambda: http_ok(self.endpoint + "/minio/health/live"), timeout)
        return self

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            obj["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        ]

    def server_env(self) -> dict[str, str]:
        """Environment for a process (the MLflow server) that stores artifacts here."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }


@contextlib.contextmanager
def running_minio(workdir: Path) -> Iterator[MinioServer]:
    server = MinioServer(workdir)
    try:
        yield server.start()
    finally:
        server.stop()
