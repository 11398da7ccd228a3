"""How `make test` hands the suite to its two workers (tests/harness/xdist_order.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.harness.xdist_order import longest_first, unit_of_work


@dataclass
class Item:
    nodeid: str


def test_the_browser_layer_is_one_unit_and_every_other_file_its_own() -> None:
    assert unit_of_work("tests/browser/test_ui_flow.py::test_a") == "tests/browser/"
    assert unit_of_work("tests/browser/test_ui_visuals.py::test_b[x]") == "tests/browser/"
    assert unit_of_work("tests/cluster/test_operator.py::test_c") == "tests/cluster/test_operator.py"
    assert unit_of_work("tests/unit/test_x.py::TestY::test_z") == "tests/unit/test_x.py"


def test_long_layers_start_first_and_each_file_keeps_its_order() -> None:
    ids = [
        "tests/unit/test_a.py::t1",
        "tests/service/test_s.py::t1",
        "tests/cluster/test_c.py::t1",
        "tests/unit/test_a.py::t2",
        "tests/browser/test_ui_flow.py::t1",
        "tests/cluster/test_c.py::t2",
        "tests/browser/test_ui_visuals.py::t1",
        "tests/service/test_s.py::t2",
    ]
    items = [Item(nodeid) for nodeid in ids]
    longest_first(items)  # type: ignore[arg-type]
    assert [item.nodeid for item in items] == [
        "tests/browser/test_ui_flow.py::t1",
        "tests/browser/test_ui_visuals.py::t1",
        "tests/cluster/test_c.py::t1",
        "tests/cluster/test_c.py::t2",
        "tests/service/test_s.py::t1",
        "tests/service/test_s.py::t2",
        "tests/unit/test_a.py::t1",
        "tests/unit/test_a.py::t2",
    ]


@pytest.mark.parametrize("nodeid", ["conftest.py::x", "tests/e2e/test_journey.py::t"])
def test_paths_outside_the_four_layers_go_last(nodeid: str) -> None:
    items = [Item(nodeid), Item("tests/unit/test_a.py::t")]
    longest_first(items)  # type: ignore[arg-type]
    assert items[-1].nodeid == nodeid
