"""MLflow's scoring protocol (`POST /invocations`, what `mlflow models serve` speaks):
request parsing and the response. Pure; `app` wires the routes.

The body is a JSON object with exactly one of

* ``dataframe_split``: ``{"columns": [...], "data": [[...], ...], "index"?: [...]}``
  (what MLflow's clients send for a DataFrame);
* ``dataframe_records``: ``[{"cpt_bucket": ..., ...}, ...]``;
* ``instances``: rows, ``[{...}, ...]`` (TF-serving's row format);
* ``inputs``: columns, ``{"cpt_bucket": [...], ...}``, or rows as for ``instances``;

and optionally ``params`` (this model takes none: it must be empty). Each row is validated by
the same code as a `/predict` claim. The answer is ``{"predictions": [{"probability_approved",
"outcome"}, ...]}``, one record per row (MLflow's clients read it as a DataFrame). Errors answer
400 (413 over the batch limit) in MLflow's shape ``{"error_code": "BAD_REQUEST", "message"}``,
with every entry in ``detail`` (`/predict`'s shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from claimops_stages.claims import FEATURES
from claimops_stages.serving import protocols
from claimops_stages.serving.schema import (
    CLAIM_ID,
    MAX_BATCH_CLAIMS,
    ParsedRequest,
    RequestError,
    claim_json_schema,
    error_entry,
    parse_claims,
)

PROTOCOL = protocols.MLFLOW_SCORING.name
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_SPLIT_KEYS = frozenset({"columns", "data", "index"})


def _bad(detail: list[dict[str, Any]]) -> RequestError:
    return RequestError(400, detail)


def error_body(error: RequestError) -> dict[str, Any]:
    """MLflow's error shape; the message names where and what (the first three errors)."""
    code = "RESOURCE_LIMIT_EXCEEDED" if error.status == 413 else "BAD_REQUEST"
    return {"error_code": code, "message": error.summary(), "detail": error.detail}


def _split_rows(split: Any) -> tuple[list[Any], str]:
    """The rows of a ``dataframe_split`` as claim objects."""
    where = ["body", "dataframe_split"]
    if not isinstance(split, dict):
        raise _bad(
            [
                error_entry(
                    "dict_type", where, 'dataframe_split should be {"columns": [...], "data": [[...]]}', split
                )
            ]
        )
    errors = [
        error_entry("extra_forbidden", [*where, key], "Extra inputs are not permitted", split[key])
        for key in sorted(set(split) - _SPLIT_KEYS)
    ]
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        errors.append(
            error_entry("list_type", [*where, "columns"], "columns should be a list of field names", columns)
        )
    elif len(set(columns)) != len(columns):
        errors.append(
            error_entry("duplicate", [*where, "columns"], "columns should name each field once", columns)
        )
    if not isinstance(data, list):
        errors.append(error_entry("list_type", [*where, "data"], "data should be a list of rows", data))
    if errors:
        raise _bad(errors)
    assert isinstance(columns, list)
    assert isinstance(data, list)
    rows: list[Any] = []
    for index, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise _bad(
                [
                    error_entry(
                        "row_length",
                        [*where, "data", index],
                        f"Each row should be a list of {len(columns)} values, one per column",
                        row,
                    )
                ]
            )
        rows.append(dict(zip(columns, row, strict=True)))
    return rows, "dataframe_split.data"


def _column_rows(columns: dict[str, Any], key: str) -> list[Any]:
    """Columnar ``inputs`` ({field: [values]}) as claim objects."""
    lengths = {name: len(values) if isinstance(values, list) else None for name, values in columns.items()}
    bad = [name for name, n in lengths.items() if n is None]
    if bad:
        raise _bad(
            [
                error_entry("list_type", ["body", key, name], "Each column should be a list", columns[name])
                for name in bad
            ]
        )
    if len(set(lengths.values())) > 1:
        raise _bad(
            [
                error_entry(
                    "shape_mismatch",
                    ["body", key],
                    f"Every column should have the same length; got {lengths}",
                    lengths,
                )
            ]
        )
    size = next(iter(lengths.values()), 0) or 0
    return [{name: values[row] for name, values in columns.items()} for row in range(size)]


def parse_invocation(payload: Any) -> ParsedRequest:
    """Validate an `/invocations` body (already JSON-decoded); RequestError 400/413 when bad."""
    if not isinstance(payload, dict):
        raise _bad(
            [
                error_entry(
                    "model_type",
                    ["body"],
                    f"The body should be a JSON object with one of {', '.join(FORMATS)}",
                    payload,
                )
            ]
        )
    given = [key for key in FORMATS if key in payload]
    extra = sorted(set(payload) - {*FORMATS, "params"})
    if extra or len(given) != 1:
        raise _bad(
            [
                error_entry(
                    "format",
                    ["body", *(extra[:1] or given[1:2])],
                    f"The body should have exactly one of {', '.join(FORMATS)} (and optionally params); got "
                    f"{', '.join(sorted(payload)) or 'nothing'}",
                    sorted(payload),
                )
            ]
        )
    if payload.get("params"):
        raise _bad(
            [
                error_entry(
                    "params",
                    ["body", "params"],
                    "This model takes no params: leave params out",
                    payload["params"],
                )
            ]
        )
    key = given[0]
    value = payload[key]
    if key == "dataframe_split":
        rows, where = _split_rows(value)
    elif key == "inputs" and isinstance(value, dict):
        rows, where = _column_rows(value, key), key
    elif isinstance(value, list):
        rows, where = value, key
    else:
        raise _bad(
            [error_entry("list_type", ["body", key], f"{key} should be a list of claim objects", value)]
        )
    path = where.split(".")
    return parse_claims(rows, lambda row: ["body", *path, row])


def predictions_body(
    probabilities: list[float], outcomes: list[str], claim_ids: Sequence[Any]
) -> dict[str, Any]:
    records: list[dict[str, Any]] = [
        {"probability_approved": p, "outcome": o} for p, o in zip(probabilities, outcomes, strict=True)
    ]
    for record, claim_id in zip(records, claim_ids, strict=True):
        if claim_id is not None:
            record[CLAIM_ID] = claim_id
    return {"predictions": records}


def invocation_json_schema() -> dict[str, Any]:
    """JSON Schema of an `/invocations` body (for OpenAPI)."""
    claim = claim_json_schema()
    rows = {"type": "array", "items": claim, "minItems": 1, "maxItems": MAX_BATCH_CLAIMS}
    fields = [*FEATURES, CLAIM_ID]
    split = {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string", "enum": fields}, "uniqueItems": True},
            "data": {
                "type": "array",
                "items": {"type": "array"},
                "minItems": 1,
                "maxItems": MAX_BATCH_CLAIMS,
            },
            "index": {"type": "array"},
        },
        "required": ["columns", "data"],
        "additionalProperties": False,
    }
    columns = {
        "type": "object",
        "properties": {name: {"type": "array"} for name in fields},
        "required": list(FEATURES),
        "additionalProperties": False,
    }
    params = {"type": "object", "maxProperties": 0}
    return {
        "oneOf": [
            {"type": "object", "properties": {"dataframe_split": split, "params": params}, "required": ["dataframe_split"], "additionalProperties": False},
            {"type": "object", "properties": {"dataframe_records": rows, "params": params}, "required": ["dataframe_records"], "additionalProperties": False},
            {"type": "object", "properties": {"instances": rows, "params": params}, "required": ["instances"], "additionalProperties": False},
            {"type": "object", "properties": {"inputs": {"oneOf": [rows, columns]}, "params": params}, "required": ["inputs"], "additionalProperties": False},
        ]
    }  # fmt: skip
