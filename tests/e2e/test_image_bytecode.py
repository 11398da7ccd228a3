"""Byte code in the three images, checked with the images the chart runs (each in a pod of its
own on kind): every module a component imports at start is loaded from a compiled .pyc in the
image, none compiled from source. The root file system is read-only and PYTHONDONTWRITEBYTECODE is set, so a module
without byte code is compiled again by every process that imports it (seconds per stage Job).
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import KindCluster

pytestmark = pytest.mark.e2e

#: Chart component -> the modules its process imports (the stage image also runs MLflow).
ENTRY_MODULES = {
    "operator": ["claimops_operator.handlers", "claimops_operator.leadership"],
    "ui": ["claimops_ui.app"],
    "mlflow": ["claimops_stages.stages", "claimops_stages.serving", "mlflow.server"],
}
# `python -v` says where each module's code came from: a quoted .pyc, or a bare source path.
FROM_BYTECODE = re.compile(r"^# code object from '(.+\.pyc)'$", re.M)
FROM_SOURCE = re.compile(r"^# code object from (/\S+\.py)$", re.M)


@pytest.mark.parametrize("component", sorted(ENTRY_MODULES))
def test_every_imported_module_is_loaded_from_byte_code(kind: KindCluster, component: str) -> None:
    pods = kind.get(
        "pods", "-l", f"app.kubernetes.io/instance={kind.release},app.kubernetes.io/component={component}"
    )
    image = pods["items"][0]["spec"]["containers"][0]["image"]
    imports = "; ".join(f"import {module}" for module in ENTRY_MODULES[component])
    # A pod of its own running the component's image, not an exec into the running one: the
    # imports would share that container's memory limit (an exec into MLflow's was OOM-killed).
    log = kind.run_in_cluster(f"bytecode-{component}", image, ["python", "-v", "-c", imports])
    compiled = FROM_BYTECODE.findall(log)
    from_source = FROM_SOURCE.findall(log)
    assert not from_source, (
        f"{len(from_source)} of {len(compiled) + len(from_source)} modules compiled from source in "
        f"{component}'s image, e.g. {from_source[:5]}"
    )
    # Not a vacuous pass: the heavy imports (Kopf, FastAPI, MLflow, scikit-learn) are there.
    assert len(compiled) > 300, log[-2000:]
