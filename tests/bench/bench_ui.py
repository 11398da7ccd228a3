"""Benchmarks of the UI against a real control plane, printed as figures.

    python tests/bench/bench_ui.py [--runs 200] [--changes 20]

Targets (2 cores), at most twice the figures measured before the pages drew charts (runs page
10 ms median, status change 50 ms p95): the runs page with 200 PipelineRuns renders in under
20 ms (median, full HTTP round trip), a run page with its stage timeline likewise, and a status
change reaches an open page in under 100 ms (p95: from the status patch until the page's DOM
shows it, measured in headless Chromium, for both the run page and the runs list). Every run
carries stage start and finish times, so the timeline and the runs list's durations are drawn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from claimops_stages.api_names import API_VERSION, GROUP, PIPELINE_RUN, VERSION
from claimops_stages.contract import STAGES
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.harness.control_plane import REPO_ROOT, ControlPlane
from tests.harness.ui_server import UiServer, setup_ui_identity, ui_config

NAMESPACE = "bench-ui"
PLURAL = PIPELINE_RUN.plural


def _at(seconds: int) -> str:
    return f"2026-01-01T00:{seconds // 60:02d}:{seconds % 60:02d}Z"


def status(i: int, state: str = "Succeeded") -> dict[str, Any]:
    # Six stages ran 40 s each after a 5 s wait: the timeline has a bar for each.
    stages = [
        {"name": s.name, "state": state if n < 6 else "Pending", "attempt": 1, "job": f"run-{i}-{s.name}-1",
         "reason": "Passed", "metrics": {"auc_roc": 0.8},
         **({"startedAt": _at(45 * n + 5), "finishedAt": _at(45 * n + 45)} if n < 6 else {})}
        for n, s in enumerate(STAGES) if s.name != "rollback"
    ]  # fmt: skip
    return {
        "status": {
            "phase": "AwaitingApproval",
            "startedAt": _at(0),
            "currentStage": "manual-approval",
            "stages": stages,
            "evaluation": {"candidateAuc": 0.8 + i / 10000, "passed": True},
            "conditions": [
                {"type": "Succeeded", "status": "Unknown", "reason": "AwaitingApproval", "message": "waiting",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
        }
    }  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="measure a checkout from before the charts (its frontend first on PYTHONPATH): "
        "no timeline is expected on the run page",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="claimops-bench-ui-"))
    plane = ControlPlane.start(workdir / "cp")
    ui: UiServer | None = None
    try:
        plane.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        plane.kubectl("wait", "--for=condition=Established", f"crd/{PIPELINE_RUN.crd_name}", "--timeout=60s")
        plane.kubectl("create", "namespace", NAMESPACE)
        api = client.CustomObjectsApi(plane.api_client())
        for i in range(args.runs):
            name = f"run-{i:04d}"
            body = {
                "apiVersion": API_VERSION,
                "kind": PIPELINE_RUN.kind,
                "metadata": {"name": name},
                "spec": {"commit": {"sha": f"{i:07x}abc", "message": f"commit {i}", "author": "bench"}},
            }
            api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
            api.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, name, status(i))
        kubeconfig = setup_ui_identity(plane, NAMESPACE, ["bench"], workdir)
        ui = UiServer(ui_config(NAMESPACE, kubeconfig, "http://127.0.0.1:9", workdir, None)).start()
        print(f"claimops UI benchmarks ({args.runs} PipelineRuns, {args.changes} status changes)")

        with httpx.Client(base_url=ui.url, timeout=30) as http:
            listing = http.get("/ui/runs")
            listed = listing.text.count('data-run="run-')
            if listing.status_code != 200 or listed != args.runs:
                raise SystemExit(
                    f"bench_ui ABORTED: /ui/runs answered HTTP {listing.status_code} listing {listed} "
                    f"of {args.runs} runs"
                )
            bars = http.get("/ui/runs/run-0001").text.count('<g class="bar ')
            if bars != (0 if args.baseline else 6):
                raise SystemExit(f"bench_ui ABORTED: the run page's timeline drew {bars} of 6 stage bars")
            for label, path in ((f"runs page, {listed} runs (median)", "/ui/runs"),
                                ("run page with its timeline (median)", "/ui/runs/run-0001")):  # fmt: skip
                times = []
                for _ in range(3 + 30):
                    started = time.perf_counter()
                    http.get(path).raise_for_status()
                    times.append(time.perf_counter() - started)
                times = times[3:]
                print(
                    f"{label:<42} {statistics.median(times) * 1000:>8.1f} ms   target < 20 ms"
                    f"   (p95 {percentile(times, 0.95) * 1000:.1f} ms, {len(times)} requests)"
                )

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            # The UI's CSP allows no eval; Playwright's wait_for_function needs it (page-side
            # polling of a predicate). Bypassing it changes nothing the UI does while timed.
            page = browser.new_page(base_url=ui.url, bypass_csp=True)
            for label, path, selector in (
                ("status change -> run page (p95)", "/ui/runs/run-0001", "#run-live"),
                ("status change -> runs list (p95)", "/ui/runs", "#run-run-0001"),
            ):
                page.goto(path)
                page.wait_for_function("document.body.classList.contains('live')")
                latencies = []
                for n in range(args.changes):
                    before = page.locator(selector).get_attribute("data-version")
                    phase = "Running" if n % 2 == 0 else "AwaitingApproval"
                    patch = status(1, "Running" if n % 2 == 0 else "Succeeded")
                    patch["status"]["phase"] = phase
                    started = time.time()
                    api.patch_namespaced_custom_object_status(
                        GROUP, VERSION, NAMESPACE, PLURAL, "run-0001", patch
                    )
                    page.wait_for_function(
                        "([sel, v]) => { const e = document.querySelector(sel); return e && e.dataset.version !== v; }",
                        arg=[selector, before],
                        polling="raf",
                        timeout=10_000,
                    )
                    latencies.append(time.time() - started)
                print(
                    f"{label:<42} {percentile(latencies, 0.95) * 1000:>8.1f} ms   target < 100 ms"
                    f"   (median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms)"
                )
            browser.close()
    finally:
        if ui is not None:
            ui.stop()
        plane.stop()
        plane.remove()


if __name__ == "__main__":
    main()
