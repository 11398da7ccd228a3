"""The live claims stream and its drift monitor.

Every tick generates a small batch of synthetic claims with the selected drift profile
(`claimops_stages.claims`), asks the production model server to score it, keeps a rolling
window of recent claims and computes each feature's population stability index (PSI) against
the champion's training reference: claims drawn like the champion's training data (its seed
and dataset window, from the champion's MLflow tags), without drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd

from claimops_stages import drift as drift_lib
from claimops_stages.claims import (
    CATEGORICAL_FEATURES,
    CATEGORIES,
    DEFAULT_WINDOW,
    DRIFT_PROFILES,
    FEATURES,
    NUMERIC_FEATURES,
    generate_claims,
)

from .errors import InvalidInput

log = logging.getLogger("claimops.ui.claims")

REFERENCE_ROWS = 5000
WINDOW_ROWS = 1000
BATCH_ROWS = 50
#: PSI on a few dozen claims is mostly noise (10 bins: ~0.3 expected with no shift at all);
#: below this many claims in the window the monitor says it is warming up instead of judging.
MIN_JUDGE_ROWS = 300
TICK_SECONDS = 1.0
#: PSI above this is drift ("major shift" by the usual reading); the same default as the
#: pipeline's maxPsi gate.
PSI_THRESHOLD = 0.2
TABLE_ROWS = 25
#: Windows the drift-over-time chart keeps (one per tick: two minutes at the default tick).
HISTORY_WINDOWS = 120
_EPS = 1e-4


def check_profile(profile: str) -> str:
    if profile not in DRIFT_PROFILES:
        raise InvalidInput(f"unknown drift profile {profile!r}; choose one of {', '.join(DRIFT_PROFILES)}")
    return profile


def categorical_psi(reference: pd.Series, current: pd.Series, categories: tuple[str, ...]) -> float:
    ref = reference.astype(str).value_counts()
    cur = current.astype(str).value_counts()
    ref_p = np.maximum(np.array([ref.get(c, 0) for c in categories]) / max(len(reference), 1), _EPS)
    cur_p = np.maximum(np.array([cur.get(c, 0) for c in categories]) / max(len(current), 1), _EPS)
    return float(np.sum((cur_p - ref_p) * np.log(cur_p / ref_p)))


def categorical_js(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """Jensen-Shannon distance (base 2) of each categorical feature of `current` against `reference`."""
    result: dict[str, float] = {}
    for name in CATEGORICAL_FEATURES:
        ref = reference[name].astype(str).value_counts()
        cur = current[name].astype(str).value_counts()
        counts = [np.array([c.get(k, 0) for k in CATEGORIES[name]], dtype=float) for c in (ref, cur)]
        value = drift_lib.js_distance(counts[0], counts[1])
        result[name] = round(value, 4) if math.isfinite(value) else 0.0
    return result


def feature_psi(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """PSI of every model feature of `current` against `reference`."""
    result: dict[str, float] = {}
    for name in FEATURES:
        if name in NUMERIC_FEATURES:
            value = drift_lib.psi(reference[name].to_numpy(float), current[name].to_numpy(float))
        else:
            value = categorical_psi(reference[name], current[name], CATEGORIES[name])
        result[name] = round(value, 4) if math.isfinite(value) else 0.0
    return result


def drift_summary(
    reference: pd.DataFrame, current: pd.DataFrame, threshold: float = PSI_THRESHOLD
) -> dict[str, Any]:
    psi = feature_psi(reference, current)
    judged = len(current) >= MIN_JUDGE_ROWS
    drifted = [f for f, v in psi.items() if v > threshold] if judged else []
    return {
        "judged": judged,
        "referenceRows": len(reference),
        "windowRows": len(current),
        "threshold": threshold,
        "psi": psi,
        "js": categorical_js(reference, current),
        "maxPsi": max(psi.values(), default=0.0),
        "driftedFeatures": drifted,
        "drifted": bool(drifted),
        "categoricalFeatures": list(CATEGORICAL_FEATURES),
    }


@dataclass
class Reference:
    seed: int = 42
    window: str = DEFAULT_WINDOW
    source: str = "default generator settings (no champion yet)"
    frame: pd.DataFrame | None = None

    def claims(self) -> pd.DataFrame:
        if self.frame is None:
            self.frame = generate_claims(REFERENCE_ROWS, seed=self.seed, window=self.window)
        return self.frame


def claim_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Claims as JSON-ready records: id, date and the model's features, in plain Python types."""
    out = frame[["claim_id", "claim_date", *FEATURES]].copy()
    out["claim_date"] = out["claim_date"].astype(str)
    for name in CATEGORICAL_FEATURES:
        out[name] = out[name].astype(str)
    records: list[dict[str, Any]] = out.to_dict(orient="records")
    for r in records:
        r["claim_id"] = int(r["claim_id"])
        r["patient_age"] = int(r["patient_age"])
        r["billed_amount"] = float(r["billed_amount"])
        r["allowed_amount"] = float(r["allowed_amount"])
    return records


def parse_scores(body: Any, count: int) -> list[float | None]:
    """Approval probabilities from a model server's answer (tolerates the usual shapes)."""
    items = body.get("predictions", body.get("scores")) if isinstance(body, dict) else body
    if not isinstance(items, list) or len(items) != count:
        raise ValueError("the model server did not return one prediction per claim")
    scores: list[float | None] = []
    for item in items:
        if isinstance(item, int | float):
            scores.append(float(item))
        elif isinstance(item, dict):
            value = next(
                (
                    item[k]
                    for k in ("probability_approved", "approval_probability", "probability", "score")
                    if k in item
                ),
                None,
            )
            scores.append(float(value) if isinstance(value, int | float) else None)
        else:
            scores.append(None)
    return scores


@dataclass
class Scorer:
    """Scores claims with the production model server (found through its ModelDeployment)."""

    production_url: Callable[[], tuple[str | None, str | None]]
    predict_path: str = "/predict"
    timeout: float = 2.0
    #: Turns a ModelDeployment's in-cluster URL into one this process can reach (identity in a
    #: cluster; the node stand-in's local ports in tests).
    resolve_url: Callable[[str], str] = field(default=lambda url: url)

    def score(self, records: list[dict[str, Any]]) -> tuple[list[float | None], str, str | None]:
        url, version = self.production_url()
        if not url:
            return [None] * len(records), "no production ModelDeployment is serving", version
        # The model server refuses unknown fields: send the model's features and the claim id.
        claims = [{"claim_id": r["claim_id"], **{f: r[f] for f in FEATURES}} for r in records]
        try:
            target = self.resolve_url(url.rstrip("/")) + self.predict_path
            response = httpx.post(target, json={"claims": claims}, timeout=self.timeout)
            response.raise_for_status()
            return parse_scores(response.json(), len(records)), "", version
        except (httpx.HTTPError, ValueError) as exc:
            return [None] * len(records), f"production model server: {type(exc).__name__}: {exc}", version


@dataclass
class ClaimsStream:
    scorer: Scorer
    reference_loader: Callable[[], Reference]
    profile: str = "none"
    running: bool = False
    batch_rows: int = BATCH_ROWS
    tick_seconds: float = TICK_SECONDS
    window: deque[pd.DataFrame] = field(default_factory=deque)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TABLE_ROWS))
    reference: Reference | None = None
    seed: int = 1_000_000
    started_by: str | None = None
    last_drift: dict[str, Any] | None = None
    #: One entry per window the stream judged (PSI, JS, profile): the drift-over-time chart.
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_WINDOWS))
    windows: int = 0
    score_note: str = ""
    serving_version: str | None = None
    _subscribers: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _reset: bool = False
    #: Guards (profile, _reset): the tick reads both in its thread while start() sets them.
    _switch: threading.Lock = field(default_factory=threading.Lock)

    def status(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "profile": self.profile,
            "profiles": list(DRIFT_PROFILES),
            "batchRows": self.batch_rows,
            "tickSeconds": self.tick_seconds,
            "windowRows": sum(len(f) for f in self.window),
            "startedBy": self.started_by,
            "reference": None
            if self.reference is None
            else {
                "seed": self.reference.seed,
                "window": self.reference.window,
                "source": self.reference.source,
            },
            "scoring": self.score_note or "scored by the production model server",
            "servingVersion": self.serving_version,
        }

    async def start(self, profile: str, user: str) -> dict[str, Any]:
        chosen = check_profile(profile)
        self.started_by = user
        with self._switch:
            self.profile = chosen
            # A new profile replaces the window (at the next tick, in the tick's thread), so
            # the chart shows that profile alone.
            self._reset = self.running
        if self.running:
            return self.status()
        # The champion may have changed since the last start: take its training data again.
        self.reference = await asyncio.to_thread(self.reference_loader)
        self.window.clear()
        self.history.clear()
        self.last_drift = None
        self.running = True
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self.status()

    async def stop(self) -> dict[str, Any]:
        self.running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        return self.status()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=20)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    async def _loop(self) -> None:
        while self.running:
            started = time.monotonic()
            try:
                message = await asyncio.to_thread(self.tick)
                for queue in list(self._subscribers):
                    if queue.full():  # a slow reader loses old batches, never blocks the stream
                        with contextlib.suppress(asyncio.QueueEmpty):
                            queue.get_nowait()
                    queue.put_nowait(message)
            except Exception:
                log.exception("claims stream tick failed")
            await asyncio.sleep(max(self.tick_seconds - (time.monotonic() - started), 0.05))

    def tick(self) -> dict[str, Any]:
        reference = self.reference or self.reference_loader()
        self.reference = reference
        self.seed += 1
        # Read together, once: a window holds and is labelled with one profile only.
        with self._switch:
            profile, reset, self._reset = self.profile, self._reset, False
        if reset:
            self.window.clear()
        batch = generate_claims(self.batch_rows, seed=self.seed, window=reference.window, drift=profile)
        records = claim_records(batch)
        scores, note, version = self.scorer.score(records)
        self.score_note, self.serving_version = note, version
        for record, score in zip(records, scores, strict=True):
            record["approvalProbability"] = None if score is None else round(score, 4)
            record["decision"] = None if score is None else ("Approved" if score >= 0.5 else "Denied")
            self.recent.appendleft(record)
        self.window.append(batch)
        while sum(len(f) for f in self.window) - len(self.window[0]) >= WINDOW_ROWS:
            self.window.popleft()
        current = pd.concat(list(self.window), ignore_index=True)
        summary = drift_summary(reference.claims(), current)
        summary["profile"] = profile
        self.last_drift = summary
        self.windows += 1
        if summary["judged"]:
            self.history.append(
                {
                    "window": self.windows,
                    "t": time.time(),
                    "profile": profile,
                    "psi": summary["psi"],
                    "js": summary["js"],
                    "maxPsi": summary["maxPsi"],
                }
            )
        return {"claims": records, "drift": summary, "status": self.status()}

    def drift(self, profile: str | None, rows: int) -> dict[str, Any]:
        """The live window's drift, or (stream stopped, or another profile asked) a fresh sample's."""
        if profile is None and self.last_drift is not None:
            return {**self.last_drift, "source": "live window"}
        chosen = check_profile(profile or self.profile)
        reference = self.reference or self.reference_loader()
        self.reference = reference
        sample = generate_claims(rows, seed=self.seed + 7919, window=reference.window, drift=chosen)
        return {
            **drift_summary(reference.claims(), sample),
            "profile": chosen,
            "source": f"fresh sample of {rows}",
        }
