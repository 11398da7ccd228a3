"""The three Dockerfiles (no Docker engine needed): they parse, build on a pinned slim Python
base, are multi-stage with nothing but the virtualenv copied into the final stage, run as a
non-root user, carry OCI labels, install the matching pyproject extra under constraints.txt,
and that requirement set resolves (`pip install --dry-run`, wheels only, every package pinned).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|make|clang|apt-get install|apk add|pip install)\b")


@dataclass(frozen=True)
class Image:
    dockerfile: str
    extra: str
    module: str


IMAGES = [
    Image("stage-images/Dockerfile", "stages", "claimops_stages"),
    Image("operator/Dockerfile", "operator", "claimops_operator"),
    Image("frontend/Dockerfile", "ui", "claimops_ui"),
]
IDS = [image.extra for image in IMAGES]


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]


def parse(path: Path) -> Dockerfile:
    """A strict reading of the Dockerfile syntax the images use (continuations, comments, ARG)."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# syntax=docker/dockerfile:"), "first line must be the syntax directive"
    logical: list[str] = []
    pending = ""
    for raw in lines:
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            logical.append(line)
    assert not pending, "dangling line continuation at the end"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        assert keyword in INSTRUCTIONS, f"unknown instruction: {line}"
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base, name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM: {line}"
            key, _, default = rest.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(global_args, stages)


def pip_install_args(stage: Stage) -> list[str]:
    """The requirement install: the build stage installs the third-party requirements in a
    layer of their own, then the project with --no-deps under the same extra and constraints."""
    # Each RUN's pip install ends at its first "&&" (byte compilation and clean-up follow).
    commands = [
        _first_command(shlex.split(run)) for run in stage.args("RUN") if run.startswith("pip install")
    ]
    assert len(commands) == 2, "the build stage runs two pip installs (requirements, then the project)"
    requirements, project = commands
    assert "--no-deps" in project
    assert "--no-deps" not in requirements
    assert [a for a in project[2:] if a != "--no-deps"] == requirements[2:]
    return requirements[2:]


def _first_command(words: list[str]) -> list[str]:
    return words[: words.index("&&")] if "&&" in words else words


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_parses_into_a_build_and_a_final_stage(image: Image) -> None:
    dockerfile = parse(REPO / image.dockerfile)
    assert [s.name for s in dockerfile.stages] == ["build", "1"]
    final = dockerfile.stages[-1]
    assert final.args("COPY") == ["--from=build /opt/venv /opt/venv"], "final stage copies only the venv"


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_base_is_a_pinned_slim_python(image: Image) -> None:
    for stage in parse(REPO / image.dockerfile).stages:
        assert PINNED_BASE.match(stage.base), (
            f"{stage.name}: {stage.base} is not pinned by version and digest"
        )


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_final_stage_runs_as_non_root_without_build_tools(image: Image) -> None:
    final = parse(REPO / image.dockerfile).stages[-1]
    users = final.args("USER")
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "USER must be numeric (runAsNonRoot can only check a numeric uid)"
    assert int(uid) >= 1000, "USER must not be root or a system account"
    assert gid.isdigit()
    assert int(gid) != 0
    for run in final.args("RUN"):
        assert not BUILD_TOOLS.search(run), f"final stage installs or builds something: {run}"
        assert f"--uid {uid}" in run, "the final stage's only RUN creates the runtime user"


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_labels_and_command(image: Image) -> None:
    final = parse(REPO / image.dockerfile).stages[-1]
    labels = " ".join(final.args("LABEL"))
    for key in ("title", "description", "source", "licenses", "version"):
        assert f"org.opencontainers.image.{key}=" in labels
    cmd = json.loads(final.args("CMD")[-1])
    assert cmd[:3] == ["python", "-m", image.module]


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_installs_the_matching_extra_under_constraints(image: Image) -> None:
    build = parse(REPO / image.dockerfile).stages[0]
    args = pip_install_args(build)
    assert args[-1] == f".[{image.extra}]"
    assert "-c" in args
    assert args[args.index("-c") + 1] == "constraints.txt"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert image.extra in extras
    # Every file the build copies exists and survives .dockerignore's allow-list.
    allowed = [line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    for copy in build.args("COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: missing"
            assert any(source.rstrip("/") == a.rstrip("/") or a.startswith(source) for a in allowed), (
                f"COPY {source}: excluded by .dockerignore"
            )


def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_requirement_set_resolves(image: Image, tmp_path: Path) -> None:
    """`pip install --dry-run` of the Dockerfile's own pip arguments (needs PyPI)."""
    args = pip_install_args(parse(REPO / image.dockerfile).stages[0])
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), *args],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    pins = _constraints()
    for item in installs:
        name = re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower()
        if name == "claimops":
            continue
        assert pins.get(name) == item["metadata"]["version"], f"{name} is not pinned by constraints.txt"
        url = item["download_info"]["url"]
        assert url.endswith(".whl"), f"{name} would build from source (needs a compiler): {url}"
    assert image.module.split("_")[0] == "claimops"
    assert any(item["metadata"]["name"] == "claimops" for item in installs)
