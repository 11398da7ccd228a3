"""Virtualenvs of their own for third-party tools whose pins clash with ours (the KServe SDK
pins another FastAPI, httpx and pandas; MLServer an older FastAPI and protobuf), built from a
pinned requirements file beside this module and cached under
``~/.cache/claimops/venvs/<name>-<hash of the file and Python>``.

    python -m tests.harness.client_venvs     # build every one (make setup does)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.harness.control_plane import cache_dir

HERE = Path(__file__).resolve().parent
#: name -> pinned requirements (pip freeze of a working install).
REQUIREMENTS = {
    "kserve": HERE / "kserve-requirements.txt",
    "mlserver": HERE / "mlserver-requirements.txt",
}


def venv_dir(name: str) -> Path:
    recipe = REQUIREMENTS[name].read_bytes() + sys.version.encode()
    return cache_dir() / "venvs" / f"{name}-{hashlib.sha256(recipe).hexdigest()[:12]}"


def venv_python(name: str) -> Path:
    """The venv's python, building the venv first when it is not cached."""
    target = venv_dir(name)
    python = target / "bin" / "python"
    if (target / ".complete").exists():
        return python
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(target)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(target)}
    subprocess.run(
        [str(uv), "pip", "install", "-q", "--python", str(python), "-r", str(REQUIREMENTS[name])],
        check=True,
        env=env,
    )
    (target / ".complete").touch()
    return python


def kserve_python() -> Path:
    return venv_python("kserve")


if __name__ == "__main__":
    for venv_name in REQUIREMENTS:
        print(f"{venv_name}: {venv_python(venv_name)}")
