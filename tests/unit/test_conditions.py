"""The condition helpers (Kubernetes API conventions: lastTransitionTime moves with status only)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from claimops_operator.conditions import (
    ConditionStatus,
    ConditionType,
    RunReason,
    condition_status,
    format_time,
    get_condition,
    initial_conditions,
    mark_failed,
    mark_running,
    mark_succeeded,
    parse_time,
    resolve_unknown,
    set_condition,
    with_generation,
)

T0 = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=7, seconds=30, microseconds=123)


def test_initial_conditions_are_all_unknown() -> None:
    conditions = initial_conditions(T0, 3)
    assert [(c["type"], c["status"], c["reason"]) for c in conditions] == [
        ("Succeeded", "Unknown", "Running"),
        ("CIPassed", "Unknown", "Running"),
        ("Approved", "Unknown", "Pending"),
        ("Deployed", "Unknown", "Pending"),
    ]
    assert {c["lastTransitionTime"] for c in conditions} == {"2026-11-26T04:00:00Z"}
    assert {c["observedGeneration"] for c in conditions} == {3}
    assert all(c["message"] for c in conditions)


@pytest.mark.parametrize(
    ("status", "reason", "expected_transition"),
    [
        pytest.param("Unknown", "AwaitingApproval", "2026-11-26T04:00:00Z", id="same-status-keeps-time"),
        pytest.param("True", "Succeeded", "2026-11-26T04:07:30Z", id="new-status-moves-time"),
        pytest.param("False", "Cancelled", "2026-11-26T04:07:30Z", id="false-moves-time"),
    ],
)
def test_set_condition_moves_last_transition_time_only_with_status(
    status: str, reason: str, expected_transition: str
) -> None:
    before = initial_conditions(T0, 1)
    snapshot = copy.deepcopy(before)
    after = set_condition(before, "Succeeded", status, reason, "now", now=T1, generation=2)
    assert before == snapshot  # pure
    summary = get_condition(after, "Succeeded")
    assert summary == {
        "type": "Succeeded",
        "status": status,
        "reason": reason,
        "message": "now",
        "lastTransitionTime": expected_transition,
        "observedGeneration": 2,
    }
    assert [c["type"] for c in after] == [c["type"] for c in before]  # order kept, nothing added


def test_set_condition_adds_a_missing_type_at_the_end() -> None:
    after = set_condition(None, "Custom", "True", "Because", "yes", now=T0, generation=1)
    after = set_condition(after, "Other", "False", "No", "no", now=T1, generation=1)
    assert [(c["type"], c["lastTransitionTime"]) for c in after] == [
        ("Custom", "2026-11-26T04:00:00Z"),
        ("Other", "2026-11-26T04:07:30Z"),
    ]


@pytest.mark.parametrize(
    ("helper", "status", "reason"),
    [
        pytest.param(
            lambda c: mark_running(c, "AwaitingCD", "m", now=T1, generation=1),
            "Unknown",
            "AwaitingCD",
            id="running",
        ),
        pytest.param(
            lambda c: mark_succeeded(c, "m", now=T1, generation=1), "True", "Succeeded", id="succeeded"
        ),
        pytest.param(
            lambda c: mark_succeeded(c, "m", now=T1, generation=1, reason=RunReason.DEPLOYED_TO_STAGING),
            "True",
            "DeployedToStaging",
            id="succeeded-staging-only",
        ),
        pytest.param(
            lambda c: mark_failed(c, "MetricRegression", "m", now=T1, generation=1),
            "False",
            "MetricRegression",
            id="failed",
        ),
    ],
)
def test_summary_helpers_only_touch_succeeded(helper: Any, status: str, reason: str) -> None:
    before = initial_conditions(T0, 1)
    after = helper(before)
    summary = get_condition(after, "Succeeded")
    assert summary is not None
    assert (condition_status(after, "Succeeded"), summary["reason"]) == (status, reason)
    assert after[1:] == before[1:]


def test_resolve_unknown_leaves_decided_conditions_alone() -> None:
    conditions = set_condition(
        initial_conditions(T0, 1), "CIPassed", "True", "Passed", "ok", now=T0, generation=1
    )
    conditions = mark_failed(conditions, "Rejected", "no", now=T1, generation=1)
    resolved = resolve_unknown(conditions, RunReason.NOT_REACHED, "ended", now=T1, generation=1)
    assert [(c["type"], c["status"], c["reason"]) for c in resolved] == [
        ("Succeeded", "False", "Rejected"),
        ("CIPassed", "True", "Passed"),
        ("Approved", "False", "NotReached"),
        ("Deployed", "False", "NotReached"),
    ]
    assert get_condition(resolved, "CIPassed") == get_condition(conditions, "CIPassed")


def test_with_generation_restamps_only_the_generation() -> None:
    conditions = initial_conditions(T0, 1)
    restamped = with_generation(conditions, 5)
    assert [{**c, "observedGeneration": 1} for c in restamped] == conditions
    assert {c["observedGeneration"] for c in restamped} == {5}


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(T1, "2026-11-26T04:07:30Z", id="utc-drops-microseconds"),
        pytest.param(
            datetime(2026, 11, 26, 6, 7, 30, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-26T04:07:30Z",
            id="offset",
        ),
        pytest.param(datetime(2026, 11, 26, 4, 7, 30), "2026-11-26T04:07:30Z", id="naive-is-utc"),
    ],
)
def test_time_round_trip(moment: datetime, text: str) -> None:
    assert format_time(moment) == text
    assert parse_time(text) == moment.replace(microsecond=0, tzinfo=moment.tzinfo or UTC)
    assert parse_time(None) is None


def test_enum_values_are_the_documented_words() -> None:
    assert [t.value for t in ConditionType] == ["Succeeded", "CIPassed", "Approved", "Deployed"]
    assert [s.value for s in ConditionStatus] == ["True", "False", "Unknown"]
    assert all(r.value.isalnum() and r.value[0].isupper() for r in RunReason)  # CamelCase
