"""The manual gate's tally (claimops_operator.approvals): quorum, four-eyes, approvers,
repeats and rejections, as the operator counts the decisions admission recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from claimops_stages.approvals import ApprovalPolicy, RecordedDecision, Verdict, stamped, tally

OPS = ("claimops:operators",)


def vote(
    user: str, decision: str = "Approved", groups: tuple[str, ...] = OPS, comment: str = ""
) -> RecordedDecision:
    return RecordedDecision(decision, user, groups, comment)


def test_one_approval_of_one_opens_the_gate() -> None:
    result = tally(ApprovalPolicy(), "sam", [vote("ada")])
    assert (result.verdict, result.approved_by, result.summary()) == (
        Verdict.APPROVED,
        ("ada",),
        "Approved: 1 of 1 approvals (ada)",
    )


def test_quorum_of_two_waits_for_a_second_distinct_approver() -> None:
    policy = ApprovalPolicy(quorum=2)
    first = tally(policy, "sam", [vote("ada")])
    assert (first.verdict, first.summary()) == (
        Verdict.PENDING,
        "Waiting for approval: 1 of 2 approvals (ada)",
    )
    twice = tally(policy, "sam", [vote("ada"), vote("ada")])
    assert twice.verdict == Verdict.PENDING
    assert twice.approvals == 1
    assert [why for _, why in twice.ignored] == ["ada already approved"]
    assert tally(policy, "sam", [vote("ada"), vote("ada"), vote("bob")]).verdict == Verdict.APPROVED


def test_four_eyes_ignores_the_submitters_own_approval() -> None:
    result = tally(ApprovalPolicy(), "ada", [vote("ada")])
    assert result.verdict == Verdict.PENDING
    assert result.ignored[0][1] == "ada submitted the run (four-eyes)"
    assert tally(ApprovalPolicy(four_eyes=False), "ada", [vote("ada")]).verdict == Verdict.APPROVED


def test_outsiders_do_not_count_and_users_or_groups_make_an_approver() -> None:
    policy = ApprovalPolicy(users=("carol",), groups=("claimops:approvers",))
    assert tally(policy, "sam", [vote("eve", groups=("developers",))]).verdict == Verdict.PENDING
    assert tally(policy, "sam", [vote("carol", groups=())]).verdict == Verdict.APPROVED
    assert tally(policy, "sam", [vote("dan", groups=("claimops:approvers",))]).verdict == Verdict.APPROVED


def test_any_allowed_rejection_rejects_even_after_an_approval() -> None:
    policy = ApprovalPolicy(quorum=2)
    result = tally(policy, "sam", [vote("ada"), vote("bob", "Rejected", comment="drift on age")])
    assert result.verdict == Verdict.REJECTED
    assert result.summary() == "Rejected by bob: drift on age"
    # The submitter may reject their own run (four-eyes is about approving).
    assert tally(ApprovalPolicy(), "sam", [vote("sam", "Rejected")]).verdict == Verdict.REJECTED


def test_votes_after_the_verdict_do_not_change_it() -> None:
    result = tally(ApprovalPolicy(), "sam", [vote("ada"), vote("bob", "Rejected")])
    assert result.verdict == Verdict.APPROVED
    assert result.ignored[0][1] == "the gate was already approved"


def test_continue_and_cancel_are_not_votes() -> None:
    decisions = [vote("ada", "ContinueToCD"), vote("ada", "Cancel")]
    assert tally(ApprovalPolicy(), "sam", decisions).verdict == Verdict.PENDING


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({}, ApprovalPolicy()),
        (
            {"quorum": 3, "fourEyes": False, "approvers": {"users": ["ada"], "groups": []}},
            ApprovalPolicy(3, False, ("ada",), ()),
        ),
    ],
)
def test_policy_parses_the_crd_field_and_round_trips(
    policy: dict[str, object], expected: ApprovalPolicy
) -> None:
    parsed = ApprovalPolicy.parse(policy)
    assert parsed == expected
    assert ApprovalPolicy.parse(parsed.to_dict()) == parsed


def test_stamped_keeps_the_time_each_decision_was_first_seen() -> None:
    first = stamped([vote("ada")], [], "2026-12-01T10:00:00Z")
    later = stamped([vote("ada"), vote("bob")], first, "2026-12-01T11:00:00Z")
    assert [d["at"] for d in later] == ["2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"]
    assert later[0]["user"] == "ada"
    assert later[0]["groups"] == list(OPS)


def test_the_python_defaults_are_the_charts() -> None:
    """A run without spec.approval.policy (made before the policy existed) is tallied with the
    chart's defaults; the two must not drift apart."""
    values = yaml.safe_load((Path(__file__).resolve().parents[2] / "helm/claimops/values.yaml").read_text())
    chart = values["approvals"]
    assert ApprovalPolicy() == ApprovalPolicy.parse(
        {"quorum": chart["quorum"], "fourEyes": chart["fourEyes"], "approvers": chart["approvers"]}
    )
