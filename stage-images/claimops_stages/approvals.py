"""The manual gate's tally: which recorded decisions count under a run's approval policy
(the operator's gate and the UI's "who may decide" read the same rules from here).

Decisions are recorded in ``spec.decisions`` by the chart's admission policies, under the
user the API server authenticated; the policy (quorum, four-eyes, approvers) is fixed in
``spec.approval.policy`` when the run is created. Admission already refuses decisions the
policy does not allow; the tally checks again so that a cluster without those policies (or an
object written around them) never opens a gate on a decision that should not count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    PENDING = "Pending"
    APPROVED = "Approved"
    REJECTED = "Rejected"


#: The decisions that vote on the manual gate (ContinueToCD and Cancel steer the run).
VOTES = (Verdict.APPROVED.value, Verdict.REJECTED.value)


@dataclass(frozen=True)
class RecordedDecision:
    decision: str
    user: str
    groups: tuple[str, ...] = ()
    comment: str = ""

    @classmethod
    def parse(cls, item: Mapping[str, Any]) -> RecordedDecision:
        return cls(
            decision=str(item.get("decision", "")),
            user=str(item.get("user", "")),
            groups=tuple(str(g) for g in item.get("groups") or ()),
            comment=str(item.get("comment") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decision": self.decision, "user": self.user, "groups": list(self.groups)}
        if self.comment:
            out["comment"] = self.comment
        return out


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who may decide and how many approvals open the gate (the CRD's spec.approval.policy;
    absent fields take the chart's defaults: one approval, four-eyes, the operators group)."""

    quorum: int = 1
    four_eyes: bool = True
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ("claimops:operators",)

    @classmethod
    def parse(cls, policy: Mapping[str, Any] | None) -> ApprovalPolicy:
        policy = policy or {}
        d = cls()
        approvers = policy.get("approvers") or {}
        return cls(
            quorum=int(policy.get("quorum", d.quorum)),
            four_eyes=bool(policy.get("fourEyes", d.four_eyes)),
            users=tuple(str(u) for u in approvers.get("users", d.users)),
            groups=tuple(str(g) for g in approvers.get("groups", d.groups)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "quorum": self.quorum,
            "fourEyes": self.four_eyes,
            "approvers": {"users": list(self.users), "groups": list(self.groups)},
        }

    def approvers(self) -> str:
        """E.g. "groups claimops:operators" or "users ada; groups claimops:operators"."""
        who = [f"users {', '.join(self.users)}"] if self.users else []
        who += [f"groups {', '.join(self.groups)}"] if self.groups else []
        return "; ".join(who) or "nobody"

    def describe(self) -> str:
        """E.g. "quorum 2, four-eyes on, approvers: groups claimops:operators"."""
        return f"quorum {self.quorum}, four-eyes {'on' if self.four_eyes else 'off'}, approvers: {self.approvers()}"

    def is_approver(self, user: str, groups: Iterable[str]) -> bool:
        return user in self.users or any(g in self.groups for g in groups)

    def refusal(self, user: str, groups: Sequence[str], submitter: str, decision: str) -> str | None:
        """Why `user` may not cast `decision` on a run `submitter` created (None: they may)."""
        if not self.is_approver(user, groups):
            return f"{user} is not an approver (users {list(self.users)}, groups {list(self.groups)})"
        if decision == Verdict.APPROVED and self.four_eyes and user == submitter:
            return f"{user} submitted the run (four-eyes)"
        return None


@dataclass(frozen=True)
class Tally:
    verdict: Verdict
    required: int
    approved_by: tuple[str, ...] = ()
    rejection: RecordedDecision | None = None
    #: Decisions that did not count, with why (policy re-check, repeats, after the verdict).
    ignored: tuple[tuple[RecordedDecision, str], ...] = field(default=())

    @property
    def approvals(self) -> int:
        return len(self.approved_by)

    def summary(self) -> str:
        if self.rejection is not None:
            note = f": {self.rejection.comment}" if self.rejection.comment else ""
            return f"Rejected by {self.rejection.user}{note}"
        who = f" ({', '.join(self.approved_by)})" if self.approved_by else ""
        if self.verdict == Verdict.APPROVED:
            return f"Approved: {self.approvals} of {self.required} approvals{who}"
        return f"Waiting for approval: {self.approvals} of {self.required} approvals{who}"


def tally(policy: ApprovalPolicy, submitter: str, decisions: Iterable[RecordedDecision]) -> Tally:
    """Count the votes in recorded order: distinct allowed approvers up to the quorum, and
    the first allowed rejection rejects. Later votes do not change a verdict."""
    approved: list[str] = []
    ignored: list[tuple[RecordedDecision, str]] = []
    for d in decisions:
        if d.decision not in VOTES:
            continue
        if len(approved) >= policy.quorum:
            ignored.append((d, "the gate was already approved"))
            continue
        if (why := policy.refusal(d.user, d.groups, submitter, d.decision)) is not None:
            ignored.append((d, why))
            continue
        if d.decision == Verdict.REJECTED:
            return Tally(Verdict.REJECTED, policy.quorum, tuple(approved), d, tuple(ignored))
        if d.user in approved:
            ignored.append((d, f"{d.user} already approved"))
            continue
        approved.append(d.user)
    verdict = Verdict.APPROVED if len(approved) >= policy.quorum else Verdict.PENDING
    return Tally(verdict, policy.quorum, tuple(approved), None, tuple(ignored))


def stamped(
    decisions: Sequence[RecordedDecision], seen: Sequence[Mapping[str, Any]], stamp: str
) -> list[dict[str, Any]]:
    """The decisions for status, each with the time the operator first saw it (kept from the
    previous status by position, since spec.decisions is append-only)."""
    out = []
    for i, d in enumerate(decisions):
        earlier = seen[i] if i < len(seen) else {}
        same = earlier.get("user") == d.user and earlier.get("decision") == d.decision
        out.append({**d.to_dict(), "at": earlier.get("at") if same and earlier.get("at") else stamp})
    return out
