"""The Helm chart (helm/claimops) as the harnesses see it: rendered by the cached helm binary
(``make cluster-binaries``), so what the tests start takes its configuration from what users
install, not from a hand-kept copy.

Renders are cached per argument list: one ``helm template`` per profile and session.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Sequence
from typing import Any

import yaml

from claimops_stages.api_names import LABEL_COMPONENT
from tests.harness.control_plane import REPO_ROOT, binary

CHART = REPO_ROOT / "helm" / "claimops"
RELEASE = "claimops"
Doc = dict[str, Any]

#: `mlflow.backend` profiles and the helm flags that select them.
MLFLOW_PROFILES = {"external": (), "embedded": ("-f", str(CHART / "values-embedded.yaml"))}


class ChartError(RuntimeError):
    """helm could not render the chart, or the chart lacks what a harness expects."""


@functools.cache
def _template(args: tuple[str, ...], release: str, namespace: str) -> str:
    done = subprocess.run(
        [str(binary("helm")), "template", release, str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise ChartError(f"helm template {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def render(*args: str, release: str = RELEASE, namespace: str = RELEASE) -> list[Doc]:
    """`helm template RELEASE helm/claimops --namespace NAMESPACE ARGS...` as objects (fresh
    copies: callers may change them)."""
    return [doc for doc in yaml.safe_load_all(_template(tuple(args), release, namespace)) if doc]


def component(doc: Doc) -> str | None:
    return (doc.get("metadata", {}).get("labels") or {}).get(LABEL_COMPONENT)


def container(docs: Sequence[Doc], component_name: str, container_name: str) -> Doc:
    """The named container of the one Deployment of a component."""
    found = [d for d in docs if d["kind"] == "Deployment" and component(d) == component_name]
    if len(found) != 1:
        raise ChartError(f"expected one {component_name} Deployment in the chart, found {len(found)}")
    for c in found[0]["spec"]["template"]["spec"]["containers"]:
        if c["name"] == container_name:
            return dict(c)
    raise ChartError(f"the {component_name} Deployment has no container {container_name!r}")


def mlflow_server_command(profile: str) -> list[str]:
    """The chart's `mlflow server ...` command for a `mlflow.backend` profile."""
    command = list(container(render(*MLFLOW_PROFILES[profile]), "mlflow", "mlflow")["command"])
    if command[:2] != ["mlflow", "server"]:
        raise ChartError(f"the chart's MLflow container does not run `mlflow server`: {command}")
    return command


def flag_value(command: Sequence[str], flag: str) -> str:
    """The value of `--flag=value` in a command (the chart always writes the `=` form)."""
    for arg in command:
        name, eq, value = arg.partition("=")
        if name == flag and eq:
            return value
    raise ChartError(f"{flag} is not in {list(command)}")


def uri_scheme(uri: str) -> str:
    """`postgresql+psycopg2` of `postgresql+psycopg2://...`; "" for a plain path."""
    return uri.split("://", 1)[0] if "://" in uri else ""


def mlflow_backend_scheme(profile: str) -> str:
    """The backend-store URI scheme (with its SQLAlchemy driver) the chart's MLflow uses."""
    return uri_scheme(flag_value(mlflow_server_command(profile), "--backend-store-uri"))
