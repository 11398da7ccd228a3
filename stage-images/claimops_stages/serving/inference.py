"""Inference paths for a fitted settlement pipeline: ONNX Runtime when it is exact, else
scikit-learn.

Why ONNX: a single-claim ``predict_proba`` through the sklearn Pipeline costs ~10-30 ms here,
nearly all of it overhead (pandas in the ColumnTransformer, joblib dispatch over 200 trees);
the same forest in one ONNX Runtime session answers in ~20 µs. The conversion is only used
when it is exact: at load, both paths score a fixed sample of synthetic claims and the
largest difference in P(Approved) must stay within :data:`PROBABILITY_TOLERANCE`; otherwise
(or when conversion fails) the server keeps scikit-learn and says why in ``/ready`` and
``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from claimops_stages.claims import CATEGORICAL_FEATURES, FEATURES, generate_claims
from claimops_stages.training import model_frame

log = logging.getLogger("claimops.serving")

#: Largest allowed |P_onnx - P_sklearn| on the check sample.
PROBABILITY_TOLERANCE = 1e-5
#: The check sample: fixed, so every load of a version makes the same decision.
CHECK_ROWS = 2000
CHECK_SEED = 20260401
#: Opsets ONNX Runtime 1.2x runs natively (TreeEnsembleClassifier from ai.onnx.ml 3).
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
APPROVED_LABEL = 1

Inference = Literal["onnx", "sklearn"]


class Predictor(Protocol):
    kind: Inference

    def predict(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """P(Approved) per claim, as float64."""
        ...


def _approved_index(pipeline: Any) -> int:
    return list(pipeline.classes_).index(APPROVED_LABEL)


class SklearnPredictor:
    """The pipeline as trained (the reference, and the fallback)."""

    kind: Inference = "sklearn"

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.column = _approved_index(pipeline)
        forest = pipeline.steps[-1][1]
        # The micro-batcher already sends one batch at a time; joblib's thread pool over the
        # trees costs milliseconds per call on small batches and buys nothing on two cores.
        if hasattr(forest, "n_jobs"):
            forest.n_jobs = 1

    def predict(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        frame = pd.DataFrame(
            {
                name: np.asarray(columns[name], dtype=object if name in CATEGORICAL_FEATURES else np.float64)
                for name in FEATURES
            }
        )
        return np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64)[:, self.column]


class OnnxPredictor:
    """One ONNX Runtime session of the whole pipeline (encoder + forest)."""

    kind: Inference = "onnx"

    def __init__(self, model_bytes: bytes, column: int, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads burn a core waiting for work: on two cores that is the core
        # the event loop needs to parse the next requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        self.column = column
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = "probabilities" if "probabilities" in outputs else outputs[-1]

    def predict(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        feeds = {
            name: np.asarray(
                columns[name], dtype=object if name in CATEGORICAL_FEATURES else np.float32
            ).reshape(-1, 1)
            for name in FEATURES
        }
        probabilities = self.session.run([self.output], feeds)[0]
        return np.asarray(probabilities[:, self.column], dtype=np.float64)


def convert_to_onnx(pipeline: Any) -> bytes:
    """The fitted pipeline as an ONNX model: one input tensor per feature, probabilities as a
    plain (n, classes) tensor (no ZipMap, which would cost a dict per row)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    # Float32 numerics lose nothing: scikit-learn's trees cast their input to float32 too.
    inputs = [
        (name, StringTensorType([None, 1]) if name in CATEGORICAL_FEATURES else FloatTensorType([None, 1]))
        for name in FEATURES
    ]
    classifier = pipeline.steps[-1][1]
    onnx_model = convert_sklearn(
        pipeline, initial_types=inputs, options={id(classifier): {"zipmap": False}}, target_opset=TARGET_OPSET
    )
    return bytes(onnx_model.SerializeToString())


def check_sample() -> dict[str, list[Any]]:
    """The fixed claims both paths must agree on (every category appears in 2,000 draws)."""
    frame = model_frame(generate_claims(CHECK_ROWS, seed=CHECK_SEED))
    return {name: frame[name].tolist() for name in FEATURES}


@dataclass(frozen=True)
class Selection:
    predictor: Predictor
    inference: Inference
    #: Why scikit-learn serves (None when ONNX does).
    fallback_reason: str | None
    #: Largest |P_onnx - P_sklearn| on the check sample (None when ONNX was not compared).
    max_abs_diff: float | None
    check_rows: int
    seconds: float


def select_predictor(
    pipeline: Any,
    mode: Literal["auto", "sklearn"] = "auto",
    tolerance: float = PROBABILITY_TOLERANCE,
    threads: int = 1,
    sample: Mapping[str, Sequence[Any]] | None = None,
) -> Selection:
    """ONNX Runtime when the conversion reproduces scikit-learn on the check sample, else
    scikit-learn (never fails: a conversion error is a fallback reason)."""
    started = time.perf_counter()
    reference = SklearnPredictor(pipeline)
    if mode == "sklearn":
        return Selection(reference, "sklearn", "inference mode sklearn requested", None, 0, 0.0)
    columns = sample if sample is not None else check_sample()
    rows = len(columns[FEATURES[0]])
    try:
        onnx = OnnxPredictor(convert_to_onnx(pipeline), _approved_index(pipeline), threads)
        # Scored in one batch and row by row over a slice: the server sends both shapes.
        diff = float(np.max(np.abs(onnx.predict(columns) - reference.predict(columns))))
        head = {name: list(values[:20]) for name, values in columns.items()}
        single = np.array(
            [onnx.predict({n: [head[n][i]] for n in FEATURES})[0] for i in range(len(head[FEATURES[0]]))]
        )
        diff = max(diff, float(np.max(np.abs(single - reference.predict(head)))))
    except Exception as exc:  # any converter or runtime error means: keep scikit-learn
        reason = f"ONNX conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        log.warning("%s; serving with scikit-learn", reason)
        return Selection(reference, "sklearn", reason, None, rows, time.perf_counter() - started)
    if not diff <= tolerance:  # also catches NaN
        reason = f"ONNX differs from scikit-learn by {diff:.3g} > {tolerance:g} on {rows} check claims"
        log.warning("%s; serving with scikit-learn", reason)
        return Selection(reference, "sklearn", reason, diff, rows, time.perf_counter() - started)
    return Selection(onnx, "onnx", None, diff, rows, time.perf_counter() - started)
