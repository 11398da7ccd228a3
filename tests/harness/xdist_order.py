"""How `make test` spreads the suite over its two pytest-xdist workers.

- A unit of work is a test file, except the browser layer, which is one unit: its later files
  read what tests/browser/test_ui_flow.py made on that worker's control plane and MLflow.
- Units start longest first, judged by layer (the browser layer, then cluster files, service
  files, the unit layer last), so the many short unit files fill in at the end instead of one
  long file running alone after the rest are done.
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from tests.harness.layer_timings import LayerTimings

#: Layers in the order their units are handed out (lower first); other paths go last.
LAYER_RANK = {"browser": 0, "cluster": 1, "service": 2, "unit": 3}
#: Folders whose files make a single unit of work.
ONE_UNIT_LAYERS = ("tests/browser/",)


def layer_rank(nodeid: str) -> int:
    return LAYER_RANK.get(LayerTimings.layer_of(nodeid), len(LAYER_RANK))


def unit_of_work(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    for folder in ONE_UNIT_LAYERS:
        if path.startswith(folder):
            return folder
    return path


def longest_first(items: list[pytest.Item]) -> None:
    """Reorders the collection in place (stable: a file keeps its tests' order)."""
    items.sort(key=lambda item: layer_rank(item.nodeid))


class LayerScheduling(LoadScopeScheduling):
    """xdist's file-scope scheduling with the browser layer as one scope."""

    def _split_scope(self, nodeid: str) -> str:
        return unit_of_work(nodeid)


def make_scheduler(config: pytest.Config, log: Any) -> LayerScheduling:
    return LayerScheduling(config, log)
