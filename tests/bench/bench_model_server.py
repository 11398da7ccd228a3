"""The ClaimOps model server against `mlflow models serve --env-manager local`, and against
Seldon's MLServer, side by side.

    python tests/bench/bench_model_server.py [--quick] [--no-mlserver] [--mlserver-workers N]

All servers serve the same registered version (a 200-tree forest, depth 12, trained on
20,000 synthetic claims) from the same real `mlflow server`, one worker process each, on
127.0.0.1. One load generator (below: a small asyncio HTTP/1.1 client with keep-alive
connections, the same code for all) sends a bounded number of requests per scenario:
single claims and 100-claim batches, at concurrency 1 and 16. The servers run one after the
other in interleaved rounds, never at once, so they do not share the two cores with each
other (only with the load generator, equally); figures are pooled over the rounds.

Two comparisons, each in its servers' common protocol:

* ours (`POST /predict`) against `mlflow models serve` (`POST /invocations`, dataframe_split);
* ours against MLServer 1.7.1 with mlserver-mlflow (`mlserver start`, its MLflow runtime
  loading `models:/<name>/<version>` from the same `mlflow server`), both over the Open
  Inference Protocol v2 REST (`POST /v2/models/<name>/infer`), one tensor per claim field.
  Each server gets the datatypes its own model metadata (`GET /v2/models/<name>`) declares:
  ours INT64 for patient_age, MLServer FP64 (the MLflow signature's double; its schema
  enforcement refuses INT64). The model-level content type "pd" comes from the signature,
  so the requests carry no content-type parameters. MLServer runs in a virtualenv of its
  own (tests/harness/mlserver-requirements.txt: mlflow, scikit-learn, skops, numpy, pandas
  and scipy at our pins, so the pipeline loads the same) with `parallel_workers` 1, its
  default: one inference worker process, as the other servers get one worker process (its
  main process only parses HTTP and hands each request over). `parallel_workers` 0 runs
  `predict` in the server process itself, on its event loop; measured here it gave MLServer
  slightly fewer requests/s and a p99 at c=16 about four times higher, so 1 is the
  conservative choice for our ratios (`--mlserver-workers 0` measures that). The forest
  keeps n_jobs=-1 as trained in MLServer and in `mlflow models serve` (ours sets 1).
  Metrics stay on (its default, on a port of their own), as ours count every request too;
  access logs are off (`debug` false), as ours writes none.

Before timing, the predictions are compared: every claim's outcome from our server must equal
the label `mlflow models serve` returns (the pipeline's `predict`), and our probabilities
must match scikit-learn's `predict_proba` of the same pipeline within 1e-5; over v2 likewise,
our `outcome` against MLServer's label (the pyfunc's `predict`: 1 Approved, 0 Denied). A
mismatch, or any request that fails while timing, aborts the benchmark (exit status 1, the
reason on stderr): figures of a server that answers wrongly or not at all measure something else.

Targets (single claims): >= 5x the requests/s and <= 1/5 of the p99 of `mlflow models serve`
at concurrency 1 and 16, and p50 <= 2 ms at concurrency 1; over v2, >= 5x the requests/s and
<= 1/5 of the p99 of MLServer at concurrency 1 and 16.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "stage-images"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from claimops_stages.claims import CATEGORICAL_FEATURES, FEATURES, OUTCOMES, generate_claims  # noqa: E402
from claimops_stages.training import model_frame  # noqa: E402
from tests.harness.client_venvs import venv_python  # noqa: E402
from tests.harness.control_plane import free_port  # noqa: E402
from tests.harness.mlflow_server import ServiceError, ServiceProcess, http_ok, running_mlflow  # noqa: E402
from tests.harness.model_server import http_json, register_model, running_model_server  # noqa: E402

MODEL = "claim-settlement-bench"
TREES, DEPTH, TRAIN_ROWS = 200, 12, 20_000
BATCH = 100
CONCURRENCY = (1, 16)
V2_INFER = f"/v2/models/{MODEL}/infer"
#: MLServer's model load (importing mlflow, downloading the artifacts) takes 20-30 s on a busy machine.
MLSERVER_READY_TIMEOUT = 240.0


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


@dataclass
class OpenInference(Target):
    """An Open Inference Protocol v2 endpoint: one tensor per claim field, ``[N]`` each, in
    the datatypes the server's model metadata declares (``datatypes``: feature -> datatype)."""

    datatypes: dict[str, str] = field(default_factory=dict)

    def payload(self, claims: list[dict[str, Any]]) -> dict[str, Any]:
        return v2_payload(claims, self.datatypes)

    def single(self, claim: dict[str, Any]) -> bytes:
        return post(self.path, self.port, json.dumps(self.payload([claim])).encode())

    def batch(self, claims: list[dict[str, Any]]) -> bytes:
        return post(self.path, self.port, json.dumps(self.payload(claims)).encode())


def v2_payload(claims: list[dict[str, Any]], datatypes: dict[str, str]) -> dict[str, Any]:
    convert = {"BYTES": str, "FP64": float, "FP32": float, "INT64": int, "INT32": int}
    return {
        "inputs": [
            {
                "name": name,
                "datatype": datatypes[name],
                "shape": [len(claims)],
                "data": [convert[datatypes[name]](c[name]) for c in claims],
            }
            for name in FEATURES
        ]
    }


def declared_datatypes(port: int, server: str) -> dict[str, str]:
    """Feature -> datatype from ``GET /v2/models/<name>``: what a v2 client of `server` sends."""
    metadata = _answer("GET", f"http://127.0.0.1:{port}/v2/models/{MODEL}", None)
    declared = {str(t.get("name")): str(t.get("datatype")) for t in metadata.get("inputs") or []}
    missing = [name for name in FEATURES if name not in declared]
    if missing:
        raise BenchAborted(f"{server}'s v2 metadata declares no input for {missing}: {metadata}")
    wrong = {
        name: declared[name]
        for name in FEATURES
        if declared[name]
        not in (("BYTES",) if name in CATEGORICAL_FEATURES else ("FP64", "FP32", "INT64", "INT32"))
    }
    if wrong:
        raise BenchAborted(f"{server}'s v2 metadata declares unexpected datatypes {wrong}")
    return {name: declared[name] for name in FEATURES}


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


@contextlib.contextmanager
def mlserver(tracking_uri: str, model_version: str, workdir: Path, workers: int) -> Iterator[int]:
    """`mlserver start` (its own virtualenv) serving models:/MODEL/<version> through
    mlserver-mlflow's runtime; yields its HTTP port once the model is ready."""
    mlserver_bin = venv_python("mlserver").parent / "mlserver"
    repository = workdir / "mlserver" / MODEL  # the folder is named like the model: no warning
    repository.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),  # not used; MLServer 1.7 always starts its gRPC server
        "metrics_port": free_port(),
        "metrics_dir": str(workdir / "mlserver" / "metrics"),
        "parallel_workers": workers,
        "debug": False,  # no access log line per request
    }
    model_settings = {
        "name": MODEL,
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": f"models:/{MODEL}/{model_version}"},
    }
    (repository / "settings.json").write_text(json.dumps(settings, indent=2))
    (repository / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    service = ServiceProcess(
        "mlserver", [str(mlserver_bin), "start", str(repository)], workdir / "mlserver.log", env
    ).start()
    try:
        try:
            service.wait_until(
                lambda: http_ok(f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready"), MLSERVER_READY_TIMEOUT
            )
        except ServiceError as exc:  # not ready in time, or exited: its log's tail is in the message
            raise BenchAborted(f"MLServer did not get ready: {exc}") from exc
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


def _v2_outputs(body: Any, server: str, rows: int) -> dict[str, list[Any]]:
    """An infer response's outputs by name, each flattened ([N] or [N, 1]), N checked."""
    outputs: dict[str, list[Any]] = {}
    for tensor in (body.get("outputs") or []) if isinstance(body, dict) else []:
        data = tensor.get("data") or []
        flat = [v for row in data for v in (row if isinstance(row, list) else [row])]
        if len(flat) != rows:
            raise BenchAborted(
                f"{server} answered {len(flat)} values of {tensor.get('name')} for {rows} claims"
            )
        outputs[str(tensor.get("name"))] = flat
    if not outputs:
        raise BenchAborted(f"{server} answered no outputs: {str(body)[:300]}")
    return outputs


def check_open_inference(
    ours: OpenInference, theirs: OpenInference | None, claims: list[dict[str, Any]], pipeline: Any
) -> str:
    """Over v2: our outcomes equal MLServer's labels (or the pipeline's `predict` without it),
    our probabilities equal sklearn's within 1e-5; raises BenchAborted on any difference."""
    import pandas as pd

    frame = pd.DataFrame(claims)[list(FEATURES)]
    #: The pipeline's labels are 1 for Approved, 0 for Denied (claims.labels): OUTCOMES[label].
    names = dict(enumerate(OUTCOMES))
    predicted = [names.get(int(v), f"label {v!r}") for v in pipeline.predict(frame)]

    def our_answer(batch: list[dict[str, Any]]) -> tuple[list[str], list[float]]:
        body = _answer("POST", f"http://127.0.0.1:{ours.port}{ours.path}", ours.payload(batch))
        outputs = _v2_outputs(body, "our server", len(batch))
        return [str(v) for v in outputs["outcome"]], [float(v) for v in outputs["probability_approved"]]

    def their_outcomes(server: OpenInference, batch: list[dict[str, Any]]) -> list[str]:
        body = _answer("POST", f"http://127.0.0.1:{server.port}{server.path}", server.payload(batch))
        (labels,) = _v2_outputs(body, "MLServer", len(batch)).values()
        return [names.get(v, f"label {v!r}") if isinstance(v, int) else f"label {v!r}" for v in labels]

    source = "the pipeline's predict" if theirs is None else "MLServer's labels"
    our_outcomes, probabilities = our_answer(claims)
    outcomes = predicted if theirs is None else their_outcomes(theirs, claims)
    same = sum(a == b for a, b in zip(our_outcomes, outcomes, strict=True))
    diff = float(np.max(np.abs(np.array(probabilities) - pipeline.predict_proba(frame)[:, 1])))
    # Single-claim requests too (a different path through our batcher, and MLServer's codecs).
    singles = min(50, len(claims))
    single_same = 0
    for i, claim in enumerate(claims[:singles]):
        expected = outcomes[i : i + 1]
        theirs_one = expected if theirs is None else their_outcomes(theirs, [claim])
        single_same += int(our_answer([claim])[0] == theirs_one == expected)
    verdict = (
        f"{same}/{len(claims)} outcomes equal to {source} (+{single_same}/{singles} single-claim "
        f"requests); max |P - sklearn| = {diff:.2e}"
    )
    if same != len(claims) or single_same != singles or diff > 1e-5:
        raise BenchAborted(f"v2 predictions MISMATCH: {verdict}")
    return f"v2 predictions: IDENTICAL: {verdict}"


@dataclass
class Scenario:
    name: str
    batch: bool
    concurrency: int
    #: Requests per server: (ours, mlflow, mlserver); ours over v2 as over /predict. Bounded;
    #: mlflow and MLServer get fewer because each costs more.
    counts: tuple[int, int, int]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return bench(argv)
    except BenchAborted as exc:
        print(f"bench_model_server ABORTED, no figures: {exc}", file=sys.stderr, flush=True)
        return 1


def bench(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the requests")
    parser.add_argument(
        "--ours-only", action="store_true", help="skip mlflow models serve and MLServer (development)"
    )
    parser.add_argument("--no-mlserver", action="store_true", help="skip the v2 comparison with MLServer")
    parser.add_argument(
        "--mlserver-workers",
        type=int,
        default=1,
        help="MLServer's parallel_workers (default 1, its own; 0: predict in its server process)",
    )
    parser.add_argument("--server-args", default="", help="extra arguments for our server")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per scenario")
    args = parser.parse_args(argv)
    # Figures, not progress bars: mlflow draws one per artifact download.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    scale = 0.1 if args.quick else 1.0
    scenarios = [
        Scenario("single c=1", False, 1, (4000, 600, 600)),
        Scenario("single c=16", False, 16, (8000, 800, 800)),
        Scenario("batch100 c=1", True, 1, (600, 200, 200)),
        Scenario("batch100 c=16", True, 16, (1200, 300, 300)),
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
                if not args.no_mlserver:
                    ours_v2 = OpenInference(
                        "claimops-v2", ours.port, V2_INFER, declared_datatypes(ours.port, "our server")
                    )
                    targets.append((ours_v2, 0))
                    mlserver_v2: OpenInference | None = None
                    if not args.ours_only:
                        started = time.perf_counter()
                        mlserver_port = stack.enter_context(
                            mlserver(mlflow_server.url, version, workdir, args.mlserver_workers)
                        )
                        mlserver_v2 = OpenInference(
                            "mlserver", mlserver_port, V2_INFER, declared_datatypes(mlserver_port, "MLServer")
                        )
                        targets.append((mlserver_v2, 2))
                        print(
                            f"mlserver: ready in {time.perf_counter() - started:.1f} s, parallel_workers "
                            f"{args.mlserver_workers}; v2 datatypes ours {ours_v2.datatypes}, "
                            f"mlserver {mlserver_v2.datatypes}",
                            flush=True,
                        )
                    print(check_open_inference(ours_v2, mlserver_v2, claims[:500], pipeline), flush=True)
                print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
                # Interleaved rounds (ours, mlflow, ours v2, mlserver, ours, ...): on a shared machine,
                # load from elsewhere then hits all servers alike instead of whichever ran last.
                for round_ in range(args.rounds):
                    for scenario in scenarios:
                        for target, which in targets:
                            result = measure(target, scenario, claims, batches, scale / args.rounds, which)
                            results.setdefault((target.name, scenario.name), []).append(result)
                            print(
                                f"  round {round_ + 1} {target.name:<11} {result.line(scenario.name)}",
                                flush=True,
                            )
                print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)
            report(results, scenarios)
            if not args.no_mlserver:
                report(
                    results, scenarios, ("claimops-v2", "claimops v2"), ("mlserver", "mlserver"), p50=False
                )
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


def report(
    rounds: dict[tuple[str, str], list[LoadResult]],
    scenarios: Sequence[Scenario],
    ours_target: tuple[str, str] = ("claimops", "claimops"),
    their_target: tuple[str, str] = ("mlflow", "mlflow"),
    p50: bool = True,
) -> None:
    """One comparison's table: (target name, column label) of ours and theirs; `p50` adds
    the p50 <= 2 ms target at c=1 (the /predict comparison's)."""
    results = {key: LoadResult.pooled(values) for key, values in rounds.items()}
    (our_key, us), (their_key, them) = ours_target, their_target
    our_width, their_width = len(f"{us} req/s"), len(f"{them} req/s")
    print(f"\npooled over all rounds (x req/s = {us} / {them}; p99 ratio = {us} p99 / {them} p99):")
    print(f"scenario        | {us} req/s  p50 ms  p99 ms | {them} req/s  p50 ms  p99 ms | x req/s  p99 ratio")
    for scenario in scenarios:
        ours = results.get((our_key, scenario.name))
        theirs = results.get((their_key, scenario.name))
        if ours is None:
            continue
        line = f"{scenario.name:<15} | {ours.rps:>{our_width}.1f} {ours.pct(50):>7.2f} {ours.pct(99):>7.2f} |"
        if theirs is not None:
            line += (
                f" {theirs.rps:>{their_width}.1f} {theirs.pct(50):>7.2f} {theirs.pct(99):>7.2f} |"
                f" {ours.rps / theirs.rps:>7.1f}  {ours.pct(99) / theirs.pct(99):>9.3f}"
            )
        print(line)
    print(
        "\ntargets (single claims): req/s ratio >= 5, p99 ratio <= 0.2 at c=1 and c=16"
        + ("; p50 <= 2 ms at c=1" if p50 else "")
    )
    verdicts = []
    for name in ("single c=1", "single c=16"):
        ours, theirs = results.get((our_key, name)), results.get((their_key, name))
        if ours is not None and theirs is not None:
            verdicts.append(
                f"{name}: throughput x{ours.rps / theirs.rps:.1f} ({'met' if ours.rps >= 5 * theirs.rps else 'MISSED'}), "
                f"p99 ratio {ours.pct(99) / theirs.pct(99):.3f} ({'met' if ours.pct(99) <= theirs.pct(99) / 5 else 'MISSED'})"
            )
    ours = results.get((our_key, "single c=1"))
    if p50 and ours is not None:
        verdicts.append(f"single c=1 p50 {ours.pct(50):.2f} ms ({'met' if ours.pct(50) <= 2 else 'MISSED'})")
    print("\n".join(verdicts))


if __name__ == "__main__":
    raise SystemExit(main())
