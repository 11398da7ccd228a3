"""The ClaimOps model server against `mlflow models serve --env-manager local`, side by side.

    python tests/bench/bench_model_server.py [--quick] [--requests-scale X]

Both servers serve the same registered version (a 200-tree forest, depth 12, trained on
20,000 synthetic claims) from the same real `mlflow server`, one worker process each, on
127.0.0.1. One load generator (below: a small asyncio HTTP/1.1 client with keep-alive
connections, the same code for both) sends a bounded number of requests per scenario:
single claims and 100-claim batches, at concurrency 1 and 16. The servers run one after the
other in interleaved rounds, never at once, so they do not share the two cores with each
other (only with the load generator, equally); figures are pooled over the rounds.

Before timing, the predictions are compared: every claim's outcome from our server must equal
the label `mlflow models serve` returns (the pipeline's `predict`), and our probabilities
must match scikit-learn's `predict_proba` of the same pipeline within 1e-5. A mismatch, or any
request that fails while timing, aborts the benchmark (exit status 1, the reason on stderr):
figures of a server that answers wrongly or not at all measure something else.

Targets (single claims): >= 5x the requests/s and <= 1/5 of the p99 of `mlflow models serve`
at concurrency 1 and 16, and p50 <= 2 ms at concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "stage-images"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from claimops_stages.claims import FEATURES, generate_claims  # noqa: E402
from claimops_stages.training import model_frame  # noqa: E402
from tests.harness.control_plane import free_port  # noqa: E402
from tests.harness.mlflow_server import ServiceProcess, http_ok, running_mlflow  # noqa: E402
from tests.harness.model_server import http_json, register_model, running_model_server  # noqa: E402

MODEL = "claim-settlement-bench"
TREES, DEPTH, TRAIN_ROWS = 200, 12, 20_000
BATCH = 100
CONCURRENCY = (1, 16)


class BenchAborted(RuntimeError):
    """A server answered wrongly or failed a request: no figure would mean what it says."""


# --- the load generator -------------------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection: send a prepared request, read one response.

    Deliberately minimal (Content-Length or chunked bodies, no redirects): the client's own
    cost per request should be small next to either server's, and identical for both."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if "content-length" in headers:
            return status, await self.reader.readexactly(int(headers["content-length"]))
        body = b""
        while True:  # chunked
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return status, body
            body += chunk[:-2]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def post(path: str, port: int, payload: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: np.ndarray  # seconds
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000

    def line(self, scenario: str) -> str:
        return (
            f"{scenario:<14} {self.requests:>6} req  {self.rps:>8.1f} req/s  "
            f"p50 {self.pct(50):>7.2f} ms  p99 {self.pct(99):>7.2f} ms  errors {self.errors}"
        )

    @staticmethod
    def pooled(results: Sequence[LoadResult]) -> LoadResult:
        """All rounds as one run: requests over summed time, percentiles over all latencies."""
        return LoadResult(
            sum(r.requests for r in results),
            sum(r.seconds for r in results),
            np.concatenate([r.latencies for r in results]),
            sum(r.errors for r in results),
        )


async def _load(port: int, requests: Sequence[bytes], total: int, concurrency: int) -> LoadResult:
    connections = [await HttpConnection.open(port) for _ in range(concurrency)]
    latencies = np.zeros(total)
    issued = 0
    errors = 0

    async def worker(conn: HttpConnection) -> None:
        nonlocal issued, errors
        while issued < total:
            i = issued
            issued += 1
            started = time.perf_counter()
            status, body = await conn.send(requests[i % len(requests)])
            latencies[i] = time.perf_counter() - started
            if status != 200:
                errors += 1
                raise BenchAborted(f"request {i + 1} of {total} answered HTTP {status}: {body[:300]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    seconds = time.perf_counter() - started
    for conn in connections:
        await conn.close()
    return LoadResult(total, seconds, latencies, errors)


def run_load(port: int, requests: Sequence[bytes], total: int, concurrency: int) -> LoadResult:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(_load(port, requests, total, concurrency))
    return asyncio.run(_load(port, requests, total, concurrency))


# --- the two servers ----------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    path: str

    def single(self, claim: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def batch(self, claims: list[dict[str, Any]]) -> bytes:
        raise NotImplementedError


class Ours(Target):
    def single(self, claim: dict[str, Any]) -> bytes:
        return post(self.path, self.port, json.dumps(claim).encode())

    def batch(self, claims: list[dict[str, Any]]) -> bytes:
        return post(self.path, self.port, json.dumps({"claims": claims}).encode())


class MlflowServe(Target):
    def single(self, claim: dict[str, Any]) -> bytes:
        return post(self.path, self.port, json.dumps({"dataframe_records": [claim]}).encode())

    def batch(self, claims: list[dict[str, Any]]) -> bytes:
        split = {"columns": list(FEATURES), "data": [[c[f] for f in FEATURES] for c in claims]}
        return post(self.path, self.port, json.dumps({"dataframe_split": split}).encode())


@contextlib.contextmanager
def mlflow_models_serve(tracking_uri: str, model_uri: str, workdir: Path) -> Iterator[int]:
    port = free_port()
    argv = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
        "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    service = ServiceProcess(
        "mlflow models serve",
        argv,
        workdir / "mlflow-models-serve.log",
        {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            # It execs `uvicorn` from PATH: the one next to this interpreter.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        },
    ).start()
    try:
        service.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/ping"), 180)
        yield port
    finally:
        service.stop()


def claims_payload(rows: int, seed: int) -> list[dict[str, Any]]:
    frame = model_frame(generate_claims(rows, seed=seed))
    records: list[dict[str, Any]] = frame.to_dict(orient="records")
    for record in records:
        record["patient_age"] = int(record["patient_age"])
    return records


def _answer(method: str, url: str, payload: Any) -> Any:
    status, body = http_json(method, url, payload)
    if status != 200:
        raise BenchAborted(f"{method} {url} answered HTTP {status}: {str(body)[:300]}")
    return body


def check_predictions(
    ours_port: int, mlflow_port: int | None, claims: list[dict[str, Any]], pipeline: Any
) -> str:
    """Identical outcomes (ours vs mlflow's labels, or vs the pipeline's `predict` without
    mlflow), probabilities vs sklearn within 1e-5; raises BenchAborted on any difference."""
    import pandas as pd

    frame = pd.DataFrame(claims)[list(FEATURES)]
    ours = _answer("POST", f"http://127.0.0.1:{ours_port}/predict", {"claims": claims})
    if mlflow_port is None:
        source = "the pipeline's predict"
        their_labels = [int(v) for v in pipeline.predict(frame)]
    else:
        source = "mlflow's labels"
        split = {"columns": list(FEATURES), "data": [[c[f] for f in FEATURES] for c in claims]}
        theirs = _answer("POST", f"http://127.0.0.1:{mlflow_port}/invocations", {"dataframe_split": split})
        their_labels = [int(v) for v in theirs["predictions"]]
    our_labels = [int(p["outcome"] == "Approved") for p in ours["predictions"]]
    if len(our_labels) != len(claims):
        raise BenchAborted(f"our server answered {len(our_labels)} predictions for {len(claims)} claims")
    same = sum(a == b for a, b in zip(our_labels, their_labels, strict=True))
    reference = pipeline.predict_proba(frame)[:, 1]
    diff = float(
        np.max(np.abs(np.array([p["probability_approved"] for p in ours["predictions"]]) - reference))
    )
    # Single-claim requests too (a different path through the batcher).
    singles = min(50, len(claims))
    single_same = 0
    for claim, label in list(zip(claims, their_labels, strict=True))[:singles]:
        one = _answer("POST", f"http://127.0.0.1:{ours_port}/predict", claim)
        single_same += int(int(one["predictions"][0]["outcome"] == "Approved") == label)
    verdict = (
        f"{same}/{len(claims)} outcomes equal to {source} (+{single_same}/{singles} single-claim "
        f"requests); max |P - sklearn| = {diff:.2e}"
    )
    if same != len(claims) or single_same != singles or diff > 1e-5:
        raise BenchAborted(f"predictions MISMATCH: {verdict}")
    return f"predictions: IDENTICAL: {verdict}"


@dataclass
class Scenario:
    name: str
    batch: bool
    concurrency: int
    #: Requests per server: (ours, mlflow). Bounded; mlflow gets fewer because each costs more.
    counts: tuple[int, int]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return bench(argv)
    except BenchAborted as exc:
        print(f"bench_model_server ABORTED, no figures: {exc}", file=sys.stderr, flush=True)
        return 1


def bench(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the requests")
    parser.add_argument("--ours-only", action="store_true", help="skip mlflow models serve (development)")
    parser.add_argument("--server-args", default="", help="extra arguments for our server")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per scenario")
    args = parser.parse_args(argv)
    # Figures, not progress bars: mlflow draws one per artifact download.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    scale = 0.1 if args.quick else 1.0
    scenarios = [
        Scenario("single c=1", False, 1, (4000, 600)),
        Scenario("single c=16", False, 16, (8000, 800)),
        Scenario("batch100 c=1", True, 1, (600, 200)),
        Scenario("batch100 c=16", True, 16, (1200, 300)),
    ]
    claims = claims_payload(2000, seed=20261126)
    batches = [claims[i : i + BATCH] for i in range(0, len(claims), BATCH)]
    with tempfile.TemporaryDirectory(prefix="bench-model-server-") as tmp:
        workdir = Path(tmp)
        with running_mlflow(
            f"sqlite:///{workdir}/mlflow.db", str(workdir / "artifacts"), workdir
        ) as mlflow_server:
            started = time.perf_counter()
            version, pipeline = register_model(
                mlflow_server.url, MODEL, rows=TRAIN_ROWS, n_estimators=TREES, max_depth=DEPTH
            )
            print(
                f"registered {MODEL} v{version}: {TREES} trees, depth {DEPTH}, {TRAIN_ROWS} claims "
                f"({time.perf_counter() - started:.1f} s); {os.cpu_count()} cores",
                flush=True,
            )
            results: dict[tuple[str, str], list[LoadResult]] = {}
            server_args = args.server_args.split()
            with contextlib.ExitStack() as stack:
                ours = stack.enter_context(
                    running_model_server(mlflow_server.url, MODEL, workdir, version=version, args=server_args)
                )
                _, ready = ours.ready()
                print(
                    f"ours: inference {ready['inference']}, onnx max |diff| {ready['onnx_max_abs_diff']}",
                    flush=True,
                )
                targets: list[tuple[Target, int]] = [(Ours("claimops", ours.port, "/predict"), 0)]
                mlflow_port: int | None = None
                if not args.ours_only:
                    mlflow_port = stack.enter_context(
                        mlflow_models_serve(mlflow_server.url, f"models:/{MODEL}/{version}", workdir)
                    )
                    targets.append((MlflowServe("mlflow", mlflow_port, "/invocations"), 1))
                print(check_predictions(ours.port, mlflow_port, claims[:500], pipeline), flush=True)
                print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
                # Interleaved rounds (ours, mlflow, ours, mlflow, ...): on a shared machine, load
                # from elsewhere then hits both servers alike instead of whichever ran second.
                for round_ in range(args.rounds):
                    for scenario in scenarios:
                        for target, which in targets:
                            result = measure(target, scenario, claims, batches, scale / args.rounds, which)
                            results.setdefault((target.name, scenario.name), []).append(result)
                            print(
                                f"  round {round_ + 1} {target.name:<9} {result.line(scenario.name)}",
                                flush=True,
                            )
                print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)
            report(results, scenarios)
    return 0


def measure(
    target: Target,
    scenario: Scenario,
    claims: list[dict[str, Any]],
    batches: list[list[dict[str, Any]]],
    scale: float,
    which: int,
) -> LoadResult:
    requests = [target.batch(b) for b in batches] if scenario.batch else [target.single(c) for c in claims]
    total = max(int(scenario.counts[which] * scale), scenario.concurrency * 4)
    run_load(target.port, requests, max(total // 10, scenario.concurrency), scenario.concurrency)  # warm-up
    return run_load(target.port, requests, total, scenario.concurrency)


def report(rounds: dict[tuple[str, str], list[LoadResult]], scenarios: Sequence[Scenario]) -> None:
    results = {key: LoadResult.pooled(values) for key, values in rounds.items()}
    print("\npooled over all rounds (x req/s = claimops / mlflow; p99 ratio = claimops p99 / mlflow p99):")
    print(
        "scenario        | claimops req/s  p50 ms  p99 ms | mlflow req/s  p50 ms  p99 ms | x req/s  p99 ratio"
    )
    for scenario in scenarios:
        ours = results.get(("claimops", scenario.name))
        theirs = results.get(("mlflow", scenario.name))
        if ours is None:
            continue
        line = f"{scenario.name:<15} | {ours.rps:>14.1f} {ours.pct(50):>7.2f} {ours.pct(99):>7.2f} |"
        if theirs is not None:
            line += (
                f" {theirs.rps:>12.1f} {theirs.pct(50):>7.2f} {theirs.pct(99):>7.2f} |"
                f" {ours.rps / theirs.rps:>7.1f}  {ours.pct(99) / theirs.pct(99):>9.3f}"
            )
        print(line)
    print("\ntargets (single claims): req/s ratio >= 5, p99 ratio <= 0.2 at c=1 and c=16; p50 <= 2 ms at c=1")
    verdicts = []
    for name in ("single c=1", "single c=16"):
        ours, theirs = results.get(("claimops", name)), results.get(("mlflow", name))
        if ours is not None and theirs is not None:
            verdicts.append(
                f"{name}: throughput x{ours.rps / theirs.rps:.1f} ({'met' if ours.rps >= 5 * theirs.rps else 'MISSED'}), "
                f"p99 ratio {ours.pct(99) / theirs.pct(99):.3f} ({'met' if ours.pct(99) <= theirs.pct(99) / 5 else 'MISSED'})"
            )
    ours = results.get(("claimops", "single c=1"))
    if ours is not None:
        verdicts.append(f"single c=1 p50 {ours.pct(50):.2f} ms ({'met' if ours.pct(50) <= 2 else 'MISSED'})")
    print("\n".join(verdicts))


if __name__ == "__main__":
    raise SystemExit(main())
