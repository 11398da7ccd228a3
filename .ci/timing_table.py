"""Prints .ci/run's timing table: each phase and test layer with its wall time, in the order
they ended; a test layer also with its busy time (its tests' own durations added up: under
two pytest workers the layers overlap). Its last line adds up every layer's tests, in the
plain "N passed, N failed" form. Usage:
python3 .ci/timing_table.py <timings.jsonl> <cache state> <exit code>"""

import json
import sys
from pathlib import Path


def minutes(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def main(path: str, cache_state: str, exit_code: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    outcome = "passed" if exit_code == "0" else f"FAILED (exit {exit_code})"
    print(f"\n== timing table ({outcome}; cache at the start: {cache_state})")
    width = max([len(r["phase"]) for r in rows] + [5])
    print(f"| {'phase':<{width}} | {'m:ss':>6} | {'s':>6} | {'busy s':>6} | tests |")
    print(f"| {'-' * width} | {'-' * 6}:| {'-' * 6}:| {'-' * 6}:| ----: |")
    for row in rows:
        tests = str(row["tests"]) if "tests" in row else ""
        busy = str(row["busy"]) if "busy" in row else ""
        print(
            f"| {row['phase']:<{width}} | {minutes(row['seconds']):>6} | {row['seconds']:>6} | {busy:>6} | {tests:>5} |"
        )
    layers = [row for row in rows if "passed" in row]
    if layers:
        passed, failed, skipped = (sum(row[key] for row in layers) for key in ("passed", "failed", "skipped"))
        print(f"\ntests: {passed} passed, {failed} failed, {skipped} skipped")


if __name__ == "__main__":
    main(*sys.argv[1:4])
