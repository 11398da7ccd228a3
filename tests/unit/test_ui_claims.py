"""The drift monitor's PSI and the model-server answer parser."""

from __future__ import annotations

from typing import Any

import pytest

from claimops_stages.claims import FEATURES, generate_claims
from claimops_ui.claims_stream import MIN_JUDGE_ROWS, drift_summary, parse_scores

REFERENCE = generate_claims(5000, seed=1)

PROFILES = [
    ("none", False, []),
    ("severe", True, ["billed_amount", "patient_age", "provider_type"]),
]


@pytest.mark.parametrize(("profile", "drifted", "must_drift"), PROFILES, ids=[p[0] for p in PROFILES])
def test_psi_over_a_window_flags_the_severe_profile_only(
    profile: str, drifted: bool, must_drift: list[str]
) -> None:
    window = generate_claims(1000, seed=2, drift=profile)
    summary = drift_summary(REFERENCE, window)
    assert summary["judged"]
    assert set(summary["psi"]) == set(FEATURES)
    assert summary["drifted"] is drifted
    assert set(must_drift) <= set(summary["driftedFeatures"])
    if not drifted:
        assert summary["maxPsi"] < 0.1


def test_a_small_window_is_not_judged() -> None:
    # A few dozen claims give PSI values around 0.3 without any shift: no verdict yet.
    summary = drift_summary(REFERENCE, generate_claims(MIN_JUDGE_ROWS - 1, seed=3))
    assert not summary["judged"]
    assert not summary["drifted"]


SCORES: list[tuple[str, Any, list[float | None]]] = [
    ("plain-list", [0.2, 0.9], [0.2, 0.9]),
    ("predictions-numbers", {"predictions": [0.1, 1]}, [0.1, 1.0]),
    ("predictions-dicts", {"predictions": [{"approval_probability": 0.3}, {"probability": 0.6}]}, [0.3, 0.6]),
    ("scores-key", {"scores": [{"score": 0.5}, "x"]}, [0.5, None]),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in SCORES], ids=[c[0] for c in SCORES])
def test_parse_scores(body: Any, expected: list[float | None]) -> None:
    assert parse_scores(body, 2) == expected


@pytest.mark.parametrize(
    "body", [{"predictions": [0.1]}, {"other": []}, "text"], ids=["too-few", "no-key", "not-json-list"]
)
def test_parse_scores_refuses_answers_that_do_not_match(body: Any) -> None:
    with pytest.raises(ValueError, match="one prediction per claim"):
        parse_scores(body, 2)
