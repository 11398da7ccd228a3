"""The model server's request validation: good bodies parse into columns, bad ones give
FastAPI-style details with the field's location."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claimops_stages.claims import FEATURES
from claimops_stages.serving.schema import (
    MAX_BATCH_CLAIMS,
    MAX_BODY_BYTES,
    RequestError,
    claim_json_schema,
    parse_predict_body,
)

CLAIM: dict[str, Any] = {
    "cpt_bucket": "Surgery",
    "provider_type": "Hospital",
    "billed_amount": 4200.0,
    "allowed_amount": 3100.5,
    "diagnosis_group": "Renal",
    "patient_age": 77,
}


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in CLAIM.items() if k != name}


GOOD = [
    pytest.param(CLAIM, 1, False, [None], id="single-claim"),
    pytest.param({**CLAIM, "claim_id": "c-17"}, 1, False, ["c-17"], id="single-with-claim-id"),
    pytest.param({"claims": [CLAIM, {**CLAIM, "claim_id": 9}]}, 2, True, [None, 9], id="batch"),
    pytest.param({**CLAIM, "patient_age": 77.0}, 1, False, [None], id="integral-float-age"),
    pytest.param(
        {**CLAIM, "billed_amount": 4200, "allowed_amount": 4200}, 1, False, [None], id="int-amounts-equal"
    ),
    pytest.param({**CLAIM, "allowed_amount": 0}, 1, False, [None], id="zero-allowed"),
    pytest.param(
        {"claims": [CLAIM] * MAX_BATCH_CLAIMS},
        MAX_BATCH_CLAIMS,
        True,
        [None] * MAX_BATCH_CLAIMS,
        id="max-batch",
    ),
]


@pytest.mark.parametrize(("payload", "rows", "batch", "claim_ids"), GOOD)
def test_good_bodies_parse_into_columns(payload: Any, rows: int, batch: bool, claim_ids: list[Any]) -> None:
    parsed = parse_predict_body(body(payload))
    assert (parsed.rows, parsed.batch, parsed.claim_ids) == (rows, batch, claim_ids)
    assert list(parsed.columns) == list(FEATURES)
    assert parsed.columns["cpt_bucket"][0] == "Surgery"
    assert all(isinstance(v, float) for v in parsed.columns["patient_age"])
    assert all(len(values) == rows for values in parsed.columns.values())


BAD = [
    pytest.param(b"{not json", 422, "json_invalid", ["body"], id="malformed-json"),
    pytest.param(b"\xff\xfe\x00", 422, "json_invalid", ["body"], id="not-utf8"),
    pytest.param(body([CLAIM]), 422, "model_type", ["body"], id="top-level-list"),
    pytest.param(body("claim"), 422, "model_type", ["body"], id="top-level-string"),
    pytest.param(
        body(without("billed_amount")), 422, "missing", ["body", "billed_amount"], id="missing-field"
    ),
    pytest.param(
        body({**CLAIM, "billed_amount": "4200"}),
        422,
        "float_type",
        ["body", "billed_amount"],
        id="amount-as-string",
    ),
    pytest.param(
        body({**CLAIM, "billed_amount": True}), 422, "float_type", ["body", "billed_amount"], id="amount-bool"
    ),
    pytest.param(
        body({**CLAIM, "patient_age": 40.5}),
        422,
        "int_from_float",
        ["body", "patient_age"],
        id="age-fraction",
    ),
    pytest.param(
        body({**CLAIM, "patient_age": "40"}), 422, "int_type", ["body", "patient_age"], id="age-as-string"
    ),
    pytest.param(
        body({**CLAIM, "patient_age": 101}),
        422,
        "less_than_equal",
        ["body", "patient_age"],
        id="age-too-high",
    ),
    pytest.param(
        body({**CLAIM, "patient_age": -1}),
        422,
        "greater_than_equal",
        ["body", "patient_age"],
        id="age-negative",
    ),
    pytest.param(
        body({**CLAIM, "cpt_bucket": 3}), 422, "string_type", ["body", "cpt_bucket"], id="category-not-string"
    ),
    pytest.param(
        body({**CLAIM, "cpt_bucket": "Dentistry"}), 422, "enum", ["body", "cpt_bucket"], id="unknown-cpt"
    ),
    pytest.param(
        body({**CLAIM, "provider_type": "hospital"}),
        422,
        "enum",
        ["body", "provider_type"],
        id="category-case",
    ),
    pytest.param(
        body({**CLAIM, "diagnosis_group": ""}), 422, "enum", ["body", "diagnosis_group"], id="empty-category"
    ),
    pytest.param(
        body({**CLAIM, "billed_amount": -10.0}),
        422,
        "greater_than_equal",
        ["body", "billed_amount"],
        id="negative-billed",
    ),
    pytest.param(
        body({**CLAIM, "allowed_amount": -0.01}),
        422,
        "greater_than_equal",
        ["body", "allowed_amount"],
        id="negative-allowed",
    ),
    pytest.param(
        body({**CLAIM, "billed_amount": 6_000_000.0, "allowed_amount": 1.0}),
        422,
        "less_than_equal",
        ["body", "billed_amount"],
        id="billed-too-high",
    ),
    pytest.param(
        body({**CLAIM, "allowed_amount": 5000.0}),
        422,
        "allowed_exceeds_billed",
        ["body", "allowed_amount"],
        id="allowed-over-billed",
    ),
    pytest.param(b'{"billed_amount": NaN}', 422, "missing", ["body", "cpt_bucket"], id="nan-and-missing"),
    pytest.param(
        body(CLAIM).replace(b"4200.0", b"Infinity"),
        422,
        "finite_number",
        ["body", "billed_amount"],
        id="infinity",
    ),
    pytest.param(
        body({**CLAIM, "member_ssn": "x"}), 422, "extra_forbidden", ["body", "member_ssn"], id="extra-field"
    ),
    pytest.param(
        body({**CLAIM, "claim_id": [1]}), 422, "claim_id_type", ["body", "claim_id"], id="claim-id-list"
    ),
    pytest.param(body({"claims": []}), 422, "too_short", ["body", "claims"], id="empty-batch"),
    pytest.param(body({"claims": CLAIM}), 422, "list_type", ["body", "claims"], id="claims-not-a-list"),
    pytest.param(
        body({"claims": [CLAIM], "model": "x"}),
        422,
        "extra_forbidden",
        ["body", "model"],
        id="batch-extra-key",
    ),
    pytest.param(
        body({"claims": [CLAIM, without("patient_age")]}),
        422,
        "missing",
        ["body", "claims", 1, "patient_age"],
        id="batch-item-missing",
    ),
    pytest.param(
        body({"claims": [CLAIM, 5]}), 422, "model_type", ["body", "claims", 1], id="batch-item-not-object"
    ),
    pytest.param(
        body({"claims": [CLAIM] * (MAX_BATCH_CLAIMS + 1)}),
        413,
        "too_long",
        ["body", "claims"],
        id="oversized-batch",
    ),
    pytest.param(b" " * (MAX_BODY_BYTES + 1), 413, "body_too_large", ["body"], id="oversized-body"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, 422, "json_invalid", ["body"], id="deeply-nested"),
]


@pytest.mark.parametrize(("raw", "status", "kind", "loc"), BAD)
def test_bad_bodies_are_refused_with_details(raw: bytes, status: int, kind: str, loc: list[Any]) -> None:
    with pytest.raises(RequestError) as caught:
        parse_predict_body(raw)
    first = caught.value.detail[0]
    assert (caught.value.status, first["type"], first["loc"]) == (status, kind, loc)
    assert first["msg"]
    # The detail goes back as JSON: it must serialise strictly (no NaN, no bytes).
    json.dumps(caught.value.detail, allow_nan=False)


def test_every_error_of_a_claim_is_reported() -> None:
    bad = {**CLAIM, "cpt_bucket": "X", "billed_amount": -1, "patient_age": 300, "extra": 1}
    with pytest.raises(RequestError) as caught:
        parse_predict_body(body(bad))
    assert [d["loc"][-1] for d in caught.value.detail] == [
        "cpt_bucket",
        "billed_amount",
        "patient_age",
        "extra",
    ]


def test_error_list_is_bounded() -> None:
    with pytest.raises(RequestError) as caught:
        parse_predict_body(body({"claims": [{}] * MAX_BATCH_CLAIMS}))
    assert len(caught.value.detail) <= 50


def test_json_schema_lists_the_same_features_and_categories() -> None:
    schema = claim_json_schema()
    assert schema["required"] == list(FEATURES)
    assert "Surgery" in schema["properties"]["cpt_bucket"]["enum"]
    assert schema["properties"]["billed_amount"]["minimum"] == 0.01
