"""Figures measured by tests (failover times, load throughput): printed, and appended to the
file named by $CLAIMOPS_BENCH_OUT when it is set, so a run can collect them for a report."""

from __future__ import annotations

import os

BENCH_OUT_ENV = "CLAIMOPS_BENCH_OUT"


def record(line: str) -> None:
    print(line)
    if out := os.environ.get(BENCH_OUT_ENV):
        with open(out, "a") as fh:
            fh.write(line + "\n")
