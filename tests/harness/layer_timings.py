"""Wall time of each test layer in one pytest session, for the timing table `.ci/run` prints.

A layer is the folder under tests/ (unit, service, cluster, browser, e2e). A layer's wall time
("seconds") is from the start of its first test to the end of its last; its busy time
("busy") is the sum of its tests' setup, call and teardown times. Run in one process the two
agree; under pytest-xdist layers overlap, and the busy time says what each one costs. When
CLAIMOPS_TIMINGS names a file, one JSON line per layer is appended to it at the end of the
session: {"phase": "test: <layer>", "seconds": ..., "busy": ..., "tests": ..., "passed": ...,
"failed": ..., "skipped": ...}; a test failed when any of its phases failed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

TIMINGS_ENV = "CLAIMOPS_TIMINGS"
OUTCOMES = ("passed", "failed", "skipped")


@dataclass
class LayerClock:
    started: float
    finished: float
    tests: int = 0
    busy: float = 0.0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))


class LayerTimings:
    def __init__(self) -> None:
        self.layers: dict[str, LayerClock] = {}
        #: The outcome so far of each test that has started and not yet finished.
        self.running: dict[str, str] = {}

    @staticmethod
    def layer_of(nodeid: str) -> str:
        parts = nodeid.split("::", 1)[0].split("/")
        return parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]

    def started(self, nodeid: str) -> None:
        now = time.monotonic()
        clock = self.layers.setdefault(self.layer_of(nodeid), LayerClock(now, now))
        clock.tests += 1
        self.running[nodeid] = "passed"

    def finished(self, nodeid: str) -> None:
        clock = self.layers[self.layer_of(nodeid)]
        clock.finished = time.monotonic()
        clock.outcomes[self.running.pop(nodeid, "passed")] += 1

    def reported(self, nodeid: str, duration: float, outcome: str = "passed") -> None:
        """One phase (setup, call or teardown) of a test took `duration` seconds and ended
        with `outcome` (pytest's: passed, failed or skipped)."""
        clock = self.layers.get(self.layer_of(nodeid))
        if clock is not None:
            clock.busy += duration
        if outcome == "failed" or (outcome == "skipped" and self.running.get(nodeid) == "passed"):
            self.running[nodeid] = outcome

    def lines(self, prefix: str = "test") -> list[str]:
        return [
            json.dumps(
                {
                    "phase": f"{prefix}: {layer}",
                    "seconds": round(c.finished - c.started, 1),
                    "busy": round(c.busy, 1),
                    "tests": c.tests,
                    **c.outcomes,
                }
            )
            for layer, c in self.layers.items()
        ]

    def write(self) -> None:
        target = os.environ.get(TIMINGS_ENV)
        if not target or not self.layers:
            return
        with Path(target).open("a") as out:
            out.writelines(line + "\n" for line in self.lines())
