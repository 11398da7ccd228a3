"""The per-layer clock behind `.ci/run`'s timing table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.layer_timings import TIMINGS_ENV, LayerTimings


@pytest.mark.parametrize(
    ("nodeid", "layer"),
    [
        ("tests/unit/test_a.py::test_x", "unit"),
        ("tests/cluster/test_b.py::test_y[param/with/slash]", "cluster"),
        ("tests/conftest.py", "tests"),
        ("elsewhere.py::test_z", "elsewhere.py"),
    ],
)
def test_a_test_belongs_to_the_folder_under_tests(nodeid: str, layer: str) -> None:
    assert LayerTimings.layer_of(nodeid) == layer


def test_each_layer_is_written_once_with_its_test_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "timings.jsonl"
    target.write_text('{"phase": "setup", "seconds": 1}\n')
    monkeypatch.setenv(TIMINGS_ENV, str(target))
    timings = LayerTimings()
    for nodeid in ("tests/unit/a.py::t1", "tests/unit/a.py::t2", "tests/service/b.py::t3"):
        timings.started(nodeid)
        for phase_seconds in (0.5, 2.0, 0.25):  # setup, call, teardown
            timings.reported(nodeid, phase_seconds)
        timings.finished(nodeid)
    timings.write()
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines[0] == {"phase": "setup", "seconds": 1}, "earlier phases are kept"
    assert [(r["phase"], r["tests"], r["busy"]) for r in lines[1:]] == [
        ("test: unit", 2, 5.5),
        ("test: service", 1, 2.8),
    ]
    assert all(r["seconds"] >= 0 for r in lines[1:])


@pytest.mark.parametrize(
    ("phases", "outcome"),
    [
        (["passed", "passed", "passed"], "passed"),
        (["passed", "failed", "passed"], "failed"),
        (["passed", "passed", "failed"], "failed"),  # an error in teardown
        (["failed", "passed"], "failed"),  # an error in setup
        (["skipped", "passed"], "skipped"),
        (["passed", "skipped", "failed"], "failed"),
    ],
)
def test_a_test_counts_once_and_fails_when_any_phase_failed(phases: list[str], outcome: str) -> None:
    timings = LayerTimings()
    timings.started("tests/unit/a.py::t")
    for phase_outcome in phases:
        timings.reported("tests/unit/a.py::t", 0.1, phase_outcome)
    timings.finished("tests/unit/a.py::t")
    counts = json.loads(timings.lines()[0])
    assert {key: counts[key] for key in ("passed", "failed", "skipped")} == {
        name: int(name == outcome) for name in ("passed", "failed", "skipped")
    }


def test_nothing_is_written_without_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMINGS_ENV, raising=False)
    timings = LayerTimings()
    timings.started("tests/unit/a.py::t")
    timings.finished("tests/unit/a.py::t")
    timings.write()
    assert list(tmp_path.iterdir()) == []
