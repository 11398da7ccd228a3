"""The wheel ships every file the packages read at run time: the package-data globs of
pyproject.toml, applied the way setuptools applies them (each found package's directory,
`glob` per pattern), cover every non-Python file under the packages (templates, static
assets such as the UI's favicon.svg), Markdown docs aside. A missing glob is a 404 or a
TemplateNotFound only once the product is installed, never in a source checkout."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from setuptools import find_namespace_packages

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
#: Documentation beside the code, not read at run time.
NOT_PACKAGE_DATA = {".py", ".pyc", ".md"}


def packages() -> dict[str, Path]:
    """Every package setuptools finds (namespace packages included, as pyproject's
    [tool.setuptools.packages.find] does by default), with its directory."""
    find = SETUPTOOLS["packages"]["find"]
    assert find.get("namespaces", True), "the globs below assume namespace packages (static/, templates/)"
    found: dict[str, Path] = {}
    for where in find["where"]:
        for name in find_namespace_packages(where=str(REPO / where), include=find["include"]):
            found[name] = REPO / where / name.replace(".", "/")
    return found


def shipped() -> set[Path]:
    patterns: dict[str, list[str]] = SETUPTOOLS["package-data"]
    files: set[Path] = set()
    for name, directory in packages().items():
        for pattern in patterns.get("*", []) + patterns.get(name, []):
            files.update(Path(p) for p in glob.glob(os.path.join(directory, pattern)) if os.path.isfile(p))
    return files


def data_files() -> set[Path]:
    roots = {d for name, d in packages().items() if "." not in name}
    return {
        path
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in NOT_PACKAGE_DATA
    }


def test_every_non_python_file_is_package_data() -> None:
    missing = sorted(str(p.relative_to(REPO)) for p in data_files() - shipped())
    assert missing == [], f"add their types to [tool.setuptools.package-data] in pyproject.toml: {missing}"


def test_the_ui_assets_are_found() -> None:
    """The control for the test above: it sees the UI's templates and static files."""
    ui = REPO / "frontend" / "claimops_ui"
    expected = {ui / "static" / "favicon.svg", ui / "static" / "app.css", ui / "templates" / "base.html"}
    assert expected <= data_files()
    assert expected <= shipped()


def test_the_wheel_holds_them(tmp_path: Path) -> None:
    """The real thing, built from a copy of the sources (a few seconds): the wheel lists every
    package-data file found above."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for where in SETUPTOOLS["packages"]["find"]["where"]:
        shutil.copytree(
            REPO / where, source / where, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    uv = Path(sys.executable).with_name("uv")
    command = (
        [str(uv), "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(source)]
        if uv.exists()
        else [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(source)]
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    listed = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(path.relative_to(REPO / where)).replace(os.sep, "/")
        for where in SETUPTOOLS["packages"]["find"]["where"]
        for path in data_files()
        if path.is_relative_to(REPO / where)
    }
    assert sorted(expected - listed) == []
