"""The micro-batcher: concurrent requests share inference calls, each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from claimops_stages.serving.batching import BatcherClosedError, MicroBatcher

FEATURES = ("x",)


class RecordingModel:
    """Returns each row's x; records the batch sizes it was called with. `gate` holds the
    first call until released, so requests pile up behind it the way they do under load."""

    def __init__(self, hold_first: bool = False) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        if not hold_first:
            self.gate.set()

    def __call__(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        self.calls.append(len(columns["x"]))
        if len(self.calls) == 1:
            self.gate.wait(5)
        return np.asarray(columns["x"], dtype=float)


def rows(start: int, n: int) -> dict[str, list[float]]:
    return {"x": [float(v) for v in range(start, start + n)]}


@pytest.mark.parametrize(
    ("sizes", "max_rows", "expected_calls"),
    [
        # The first request runs alone; the six that arrive meanwhile share one call.
        pytest.param([1] * 7, 1024, [1, 6], id="singles-merge"),
        pytest.param([1, 100, 100, 100], 1024, [1, 300], id="batches-merge"),
        # max_rows caps a merged call; a request is never split.
        pytest.param([1, 3, 3, 3, 3], 6, [1, 6, 6], id="capped"),
        pytest.param([1, 10, 2], 4, [1, 10, 2], id="oversized-request-runs-alone"),
    ],
)
def test_requests_waiting_behind_a_call_share_the_next(
    sizes: list[int], max_rows: int, expected_calls: list[int]
) -> None:
    model = RecordingModel(hold_first=True)

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, FEATURES, max_rows=max_rows, inline_rows=0)
        batcher.start()
        starts = np.cumsum([0, *sizes[:-1]])
        first = asyncio.create_task(batcher.submit(rows(0, sizes[0]), sizes[0]))
        while not model.calls:  # the first call is now in flight, blocked on the gate
            await asyncio.sleep(0.001)
        rest = [
            asyncio.create_task(batcher.submit(rows(int(s), n), n))
            for s, n in zip(starts[1:], sizes[1:], strict=True)
        ]
        await asyncio.sleep(0.01)
        model.gate.set()
        results = [await first, *[await t for t in rest]]
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert model.calls == expected_calls
    starts = np.cumsum([0, *sizes[:-1]])
    for result, start, n in zip(results, starts, sizes, strict=True):
        assert result.tolist() == list(range(int(start), int(start) + n))


@pytest.mark.parametrize("inline_rows", [0, 100], ids=["thread", "inline"])
def test_an_idle_batcher_runs_a_request_at_once(inline_rows: int) -> None:
    model = RecordingModel()

    async def scenario() -> np.ndarray:
        batcher = MicroBatcher(model, FEATURES, inline_rows=inline_rows)
        batcher.start()
        result = await batcher.submit(rows(5, 3), 3)
        await batcher.close()
        return result

    assert asyncio.run(scenario()).tolist() == [5.0, 6.0, 7.0]
    assert model.calls == [3]


def test_an_inference_error_fails_its_batch_and_the_batcher_keeps_serving() -> None:
    calls = 0

    def flaky(columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return np.zeros(len(columns["x"]))

    async def scenario() -> np.ndarray:
        batcher = MicroBatcher(flaky, FEATURES)
        batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(rows(0, 1), 1)
        result = await batcher.submit(rows(0, 2), 2)
        await batcher.close()
        return result

    assert asyncio.run(scenario()).tolist() == [0.0, 0.0]


def test_close_fails_waiting_requests_and_refuses_new_ones() -> None:
    model = RecordingModel(hold_first=True)

    async def scenario() -> None:
        batcher = MicroBatcher(model, FEATURES, inline_rows=0)
        batcher.start()
        first = asyncio.create_task(batcher.submit(rows(0, 1), 1))
        while not model.calls:
            await asyncio.sleep(0.001)
        waiting = asyncio.create_task(batcher.submit(rows(1, 1), 1))
        await asyncio.sleep(0.01)
        await batcher.close()
        model.gate.set()
        for task in (first, waiting):
            with pytest.raises(BatcherClosedError):
                await task
        with pytest.raises(BatcherClosedError):
            await batcher.submit(rows(0, 1), 1)

    asyncio.run(scenario())
