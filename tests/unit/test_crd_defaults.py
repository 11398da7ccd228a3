"""The PipelineRun CRD's `default:`s and the Python defaults are one set of values.

``claimops_stages.contract.SPEC_DEFAULTS`` is the Python source (``RunSpec`` and
``StageInputs`` take theirs from it); the CRD in ``crds/`` is what the API server applies.
Changing a default in one place only fails here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from claimops_operator.pipeline import RunSpec
from claimops_stages.contract import SPEC_DEFAULTS, StageInputs

CRD = Path(__file__).resolve().parents[2] / "crds" / "pipelineruns.claimops.io.yaml"


def _spec_schema() -> Mapping[str, Any]:
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _defaults(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Any, Mapping[str, Any]]]:
    """(dotted path, default, schema) of every property with a `default:`."""
    for name, prop in (schema.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        if "default" in prop:
            yield here, prop["default"], prop
        yield from _defaults(prop, here)


CRD_SPEC_DEFAULTS = {
    path: value for path, value, prop in _defaults(_spec_schema()) if prop.get("type") != "object"
}


def test_every_crd_default_is_the_python_one() -> None:
    crd = CRD_SPEC_DEFAULTS
    assert crd == dict(SPEC_DEFAULTS)


@pytest.mark.parametrize("path", sorted(SPEC_DEFAULTS))
def test_python_default_matches_the_crd(path: str) -> None:
    assert path in CRD_SPEC_DEFAULTS, f"spec.{path} has a Python default but none in {CRD.name}"
    crd, python = CRD_SPEC_DEFAULTS[path], SPEC_DEFAULTS[path]
    assert (type(crd), crd) == (type(python), python), f"spec.{path}: CRD {crd!r} != Python {python!r}"


def test_object_defaults_only_make_their_fields_default() -> None:
    # `default: {}` on an object lets the API server fill in the object's own field defaults.
    for path, value, prop in _defaults(_spec_schema()):
        if prop.get("type") == "object":
            assert value == {}, path
            assert any(p.startswith(f"{path}.") for p in CRD_SPEC_DEFAULTS), path


#: spec path -> the RunSpec field (and the StageInputs field of the same name, if any).
RUNSPEC_FIELDS = {
    "model.name": "model_name",
    "dataset.rows": "rows",
    "dataset.seed": "seed",
    "dataset.drift": "drift",
    "training.nEstimators": "n_estimators",
    "training.maxDepth": "max_depth",
    "training.quickSampleFraction": "quick_sample_fraction",
    "gates.minAuc": "min_auc",
    "gates.maxAucDrop": "max_auc_drop",
    "gates.minShadowAgreement": "min_shadow_agreement",
    "gates.maxPsi": "max_psi",
    "continueToCD": "continue_to_cd",
    "autoContinueToCD": "auto_continue_to_cd",
    "approval.decision": "approval_decision",
    "timeouts.stageSeconds": "stage_seconds",
    "timeouts.approvalSeconds": "approval_seconds",
    "retries": "retries",
    "cancel": "cancel",
}


@pytest.mark.parametrize("path", sorted(RUNSPEC_FIELDS))
def test_runspec_and_stage_inputs_take_the_defaults(path: str) -> None:
    assert set(RUNSPEC_FIELDS) == set(SPEC_DEFAULTS)
    name = RUNSPEC_FIELDS[path]
    # A spec without the field (the API server did not default it) parses to the default too.
    parsed = RunSpec.parse({"commit": {"sha": "abcdef1"}})
    values = {getattr(RunSpec(), name), getattr(parsed, name)}
    if name in {f.name for f in fields(StageInputs)}:
        values.add(getattr(StageInputs(), name))
    assert values == {SPEC_DEFAULTS[path]}
