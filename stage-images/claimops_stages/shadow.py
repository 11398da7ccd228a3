"""What the shadow-monitor stage uses: shadow traffic, scoring it on a model server, and the
reference it checks that traffic's drift against.

The claims are synthetic, drawn with the run's seed and drift profile (so a `severe` run sends
drifted traffic); both model servers get identical batches.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from . import registry
from .claims import FEATURES, generate_claims
from .contract import StageInputs

#: Claims sent to each model server, in batches; enough for a stable agreement estimate.
SHADOW_CLAIMS = 2000
BATCH = 100
#: The reference sample size drawn from the champion's training data description.
REFERENCE_ROWS = 20000
TIMEOUT_SECONDS = 10.0


@dataclass
class Scored:
    """What one model server answered."""

    version: str | None = None
    probabilities: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0


def claims_payload(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Claims as the model server's /predict takes them (features only, plain JSON types)."""
    out = frame[list(FEATURES)].astype(object)
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in out.to_dict("records")
    ]


def score(client: httpx.Client, url: str, batches: list[list[dict[str, Any]]]) -> Scored:
    scored = Scored()
    for batch in batches:
        started = time.perf_counter()
        try:
            response = client.post(f"{url.rstrip('/')}/predict", json={"claims": batch})
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, json.JSONDecodeError):
            scored.errors += 1
            scored.probabilities += [float("nan")] * len(batch)
            continue
        scored.latencies_ms.append((time.perf_counter() - started) * 1000)
        scored.version = str(body.get("model_version", scored.version))
        scored.probabilities += [float(p["probability_approved"]) for p in body["predictions"]]
    return scored


def traffic(inputs: StageInputs) -> pd.DataFrame:
    """The shadow traffic: fresh claims (not the training seed), drifted per the run's profile."""
    return generate_claims(min(inputs.rows, SHADOW_CLAIMS), seed=inputs.seed + 1, window=inputs.window,
                           drift=inputs.drift)  # fmt: skip


def batches(frame: pd.DataFrame) -> list[list[dict[str, Any]]]:
    payload = claims_payload(frame)
    return [payload[i : i + BATCH] for i in range(0, len(payload), BATCH)]


def agreement(production: Scored, shadow: Scored) -> tuple[float, float]:
    """(share of claims both models decide alike, mean |probability difference|), over the
    claims both answered."""
    prod, shad = np.asarray(production.probabilities), np.asarray(shadow.probabilities)
    both = ~(np.isnan(prod) | np.isnan(shad))
    if not both.any():
        return 0.0, 1.0
    same = float(np.mean((prod[both] >= 0.5) == (shad[both] >= 0.5)))
    return same, float(np.mean(np.abs(prod[both] - shad[both])))


def champion_reference(client: MlflowClient, inputs: StageInputs) -> tuple[pd.DataFrame, str | None]:
    """The training data of the champion (or, with none yet, of the candidate), regenerated from
    the seed and window its training run recorded; with neither, the run's own training data."""
    name = inputs.model_name
    version = registry.alias_version(client, name, registry.CHAMPION) or inputs.candidate_version
    if version is None:
        return generate_claims(min(inputs.rows, REFERENCE_ROWS), seed=inputs.seed, window=inputs.window), None
    run_id = client.get_model_version(name, version).run_id
    if run_id is None:  # registered from outside a run: nothing recorded to regenerate it from
        return generate_claims(
            min(inputs.rows, REFERENCE_ROWS), seed=inputs.seed, window=inputs.window
        ), version
    run = client.get_run(run_id)
    tags, params = run.data.tags, run.data.params
    rows = int(params.get("train_rows", REFERENCE_ROWS)) + int(params.get("test_rows", 0))
    reference = generate_claims(
        min(rows, REFERENCE_ROWS),
        seed=int(tags.get("seed", inputs.seed)),
        window=tags.get("dataset_window", inputs.window),
    )
    return reference, version
