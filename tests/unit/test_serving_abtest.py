"""The A/B split routes exactly the configured share of requests to the challenger."""

from __future__ import annotations

import pytest

from claimops_stages.serving.abtest import CHALLENGER, TrafficSplit


@pytest.mark.parametrize(
    ("percent", "requests", "challenger"),
    [
        pytest.param(0, 100, 0, id="off"),
        pytest.param(100, 37, 37, id="all"),
        pytest.param(25, 100, 25, id="quarter"),
        pytest.param(10, 55, 5, id="tenth-floor"),
        pytest.param(50, 7, 3, id="half-odd"),
        pytest.param(12.5, 80, 10, id="fractional-percent"),
    ],
)
def test_exact_share(percent: float, requests: int, challenger: int) -> None:
    split = TrafficSplit(percent)
    arms = [split.next_arm() for _ in range(requests)]
    assert arms.count(CHALLENGER) == challenger


def test_challenger_requests_are_spread_out() -> None:
    split = TrafficSplit(25)
    arms = [split.next_arm() for _ in range(100)]
    # One in every four consecutive requests, never a run of challengers.
    assert all(arms[i : i + 4].count(CHALLENGER) == 1 for i in range(0, 100, 4))


@pytest.mark.parametrize("percent", [-1, 100.5], ids=["negative", "over-100"])
def test_percent_out_of_range_is_refused(percent: float) -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        TrafficSplit(percent)
