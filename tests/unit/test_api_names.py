"""claimops_stages.api_names agrees with the CRD YAML (the source of truth), stays standard
library only, and is the one place the operator, the UI and the stages spell those names."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from claimops_stages import api_names
from claimops_stages.api_names import GROUP, RESOURCES, VERSION, Resource

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "stage-images" / "claimops_stages" / "api_names.py"
#: The product's Python packages (the tests may spell names in kubectl arguments and YAML).
PACKAGES = ("operator", "frontend", "stage-images")


def crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted((REPO / "crds").glob("*.yaml"))]


def test_every_crd_has_a_resource_and_every_resource_a_crd() -> None:
    assert sorted(crd["metadata"]["name"] for crd in crds()) == sorted(r.crd_name for r in RESOURCES)


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_resource_matches_its_crd(resource: Resource) -> None:
    crd = next(c for c in crds() if c["metadata"]["name"] == resource.crd_name)
    spec = crd["spec"]
    names = spec["names"]
    assert spec["group"] == GROUP
    assert (names["kind"], names["plural"], names["singular"]) == (
        resource.kind,
        resource.plural,
        resource.singular,
    )
    assert tuple(names.get("shortNames", ())) == resource.short_names
    served = [v["name"] for v in spec["versions"] if v["served"]]
    storage = [v["name"] for v in spec["versions"] if v["storage"]]
    assert served == storage == [VERSION]


def test_api_version_is_group_and_version() -> None:
    assert api_names.API_VERSION == "claimops.io/v1alpha1"


def test_labels_and_annotations_are_valid_qualified_names() -> None:
    # prefix/name: a DNS subdomain prefix and a name of at most 63 characters.
    keys = [v for k, v in vars(api_names).items() if k.startswith("LABEL_")]
    keys += [
        api_names.REQUESTED_BY_RUN,
        api_names.SPEC_HASH,
        api_names.RESTART_TOKEN,
        api_names.CREATED_BY_USER,
    ]
    for key in keys:
        prefix, _, name = key.partition("/")
        assert "." in prefix, key
        assert 0 < len(name) <= 63, key
    assert len(set(keys)) == len(keys)


def test_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(MODULE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and not node.level
    }
    assert {name.split(".")[0] for name in imported} <= sys.stdlib_module_names | {"__future__"}


def _spelled_names() -> set[str]:
    names = {GROUP, VERSION, api_names.API_VERSION}
    for resource in RESOURCES:
        names |= {resource.kind, resource.plural, resource.crd_name}
    return names


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module, docstrings aside."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_packages_spell_api_names_only_through_the_module() -> None:
    exact = _spelled_names()
    found = [
        f"{path.relative_to(REPO)}:{line}: {value!r}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if path != MODULE
        for line, value in _literals(path)
        if value in exact or f"{GROUP}/" in value or "app.kubernetes.io/" in value
    ]
    assert not found, "use claimops_stages.api_names:\n" + "\n".join(found)
