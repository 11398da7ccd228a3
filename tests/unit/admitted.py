"""What the chart's approvals admission policy does to a PipelineRun spec, for the pure
tests: a cast approval (spec.approval.decision, by, comment) becomes a recorded decision in
spec.decisions and the ballot goes back to Pending. The real policy is exercised against a
real API server in tests/cluster/test_approvals.py."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

SUBMITTER = "sam"
APPROVER_GROUPS = ["claimops:operators", "system:authenticated"]


def admitted(spec: Mapping[str, Any], default_user: str = "reviewer") -> dict[str, Any]:
    out = copy.deepcopy(dict(spec))
    out.setdefault("submitter", {"username": SUBMITTER, "groups": ["system:authenticated"]})
    approval = dict(out.get("approval") or {})
    decision = approval.get("decision", "Pending")
    if decision in ("Approved", "Rejected"):
        recorded = {
            "decision": decision,
            "user": approval.get("by") or default_user,
            "groups": APPROVER_GROUPS,
        }
        if approval.get("comment"):
            recorded["comment"] = approval["comment"]
        out["decisions"] = [*out.get("decisions", []), recorded]
        out["approval"] = {k: v for k, v in approval.items() if k not in ("by", "comment")} | {
            "decision": "Pending"
        }
    return out
