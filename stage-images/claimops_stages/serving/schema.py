"""The `/predict` request body: parsing and validation with precompiled checks.

A body is either one claim (a JSON object with the model's six features) or a batch
``{"claims": [claim, ...]}`` of 1 to :data:`MAX_BATCH_CLAIMS` claims. Each claim may carry an
optional ``claim_id`` (string or integer) that is echoed back with its prediction; any other
field is rejected, so a typo never silently becomes a missing feature.

The checks are the data-validation schema's (``validation.claims_schema``): the same category
lists and ranges, plus ``allowed_amount <= billed_amount``. Errors have FastAPI's shape
(``{"detail": [{"type", "loc", "msg", "input", "ctx"?}]}``) with locations such as
``["body", "claims", 3, "billed_amount"]``, so clients get one format for every 4xx.

Why not pydantic models: validating straight into per-feature column lists (what the
inference session wants) costs a few microseconds per claim and skips building model objects
that would be taken apart again; the JSON Schema below documents the same rules in OpenAPI.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from claimops_stages.claims import CATEGORICAL_FEATURES, FEATURES
from claimops_stages.validation import ColumnSpec, claims_schema

#: Largest batch one request may carry (413 beyond): about 250 KB of JSON, ~15 ms of inference.
MAX_BATCH_CLAIMS = 1000
#: Largest request body (413 beyond): generous for MAX_BATCH_CLAIMS claims with long ids.
MAX_BODY_BYTES = 1_000_000
#: At most this many error entries per response: a 1,000-claim batch of garbage must not
#: produce a multi-megabyte 422.
MAX_ERRORS = 50
CLAIM_ID = "claim_id"
BATCH_KEY = "claims"

#: One list of values per model feature; categoricals as str, numerics as float.
Columns = dict[str, list[Any]]


def location_text(loc: Sequence[Any]) -> str:
    """An error location for people: ``["body", "claims", 3, "patient_age"]`` -> ``claims.3.patient_age``."""
    return ".".join(str(part) for part in loc[1:]) or "body"


class RequestError(Exception):
    """A request the server refuses: HTTP `status` with FastAPI-style error `detail` entries."""

    def __init__(self, status: int, detail: list[dict[str, Any]]) -> None:
        super().__init__(detail[0]["msg"] if detail else "invalid request")
        self.status = status
        self.detail = detail

    def summary(self, where: Callable[[list[Any]], str] = location_text, shown: int = 3) -> str:
        """One line for protocols whose errors are a single message: the first ``shown``
        entries as "where: what", and how many more there are."""
        messages = [f"{where(list(e.get('loc') or []))}: {e['msg']}" for e in self.detail[:shown]]
        more = len(self.detail) - shown
        return "; ".join(messages) + (f" (and {more} more errors)" if more > 0 else "")


@dataclass
class ParsedRequest:
    columns: Columns
    rows: int
    #: The claim_id of each claim (None when not given).
    claim_ids: list[Any]
    batch: bool


@dataclass(frozen=True)
class _FeatureCheck:
    name: str
    kind: str  # "category" | "float" | "int"
    categories: frozenset[str] = frozenset()
    minimum: float | None = None
    maximum: float | None = None
    ordered_categories: tuple[str, ...] = field(default=())


def _feature_checks() -> tuple[_FeatureCheck, ...]:
    specs: dict[str, ColumnSpec] = {c.name: c for c in claims_schema().columns}
    checks = []
    for name in FEATURES:
        spec = specs[name]
        checks.append(
            _FeatureCheck(
                name,
                spec.kind,
                frozenset(spec.categories),
                spec.min,
                spec.max,
                tuple(spec.categories),
            )
        )
    return tuple(checks)


FEATURE_CHECKS: tuple[_FeatureCheck, ...] = _feature_checks()
ALLOWED_FIELDS: frozenset[str] = frozenset((*FEATURES, CLAIM_ID))


def error_entry(kind: str, loc: list[Any], msg: str, value: Any, **ctx: Any) -> dict[str, Any]:
    """One FastAPI-shaped error entry: every protocol's parser reports with these."""
    entry: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": _short(value)}
    if ctx:
        entry["ctx"] = ctx
    return entry


def _short(value: Any) -> Any:
    # Echo small inputs as they were; summarise big ones (a whole claim list, a long string).
    # Non-finite floats become text: the error response itself must be valid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str) and len(value) > 100:
        return value[:100] + "..."
    if isinstance(value, dict | list):
        try:
            text = json.dumps(value, allow_nan=False)
        except (ValueError, TypeError, RecursionError):
            text = None
        if text is None or len(text) > 200:
            return f"<{type(value).__name__} of {len(value)} items>"
    return value


def _check_number(
    check: _FeatureCheck, value: Any, loc: list[Any], errors: list[dict[str, Any]]
) -> float | None:
    # bool is an int subclass in Python: `true` is not an amount.
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "int_type" if check.kind == "int" else "float_type"
        errors.append(
            error_entry(
                kind, loc, f"Input should be a valid {'integer' if check.kind == 'int' else 'number'}", value
            )
        )
        return None
    number = float(value)
    # json.loads accepts NaN and Infinity: neither is a claim amount or an age.
    if not math.isfinite(number):
        errors.append(error_entry("finite_number", loc, "Input should be a finite number", value))
        return None
    if check.kind == "int" and not number.is_integer():
        errors.append(
            error_entry(
                "int_from_float",
                loc,
                "Input should be a valid integer, got a number with a fractional part",
                value,
            )
        )
        return None
    if check.minimum is not None and number < check.minimum:
        errors.append(
            error_entry(
                "greater_than_equal",
                loc,
                f"Input should be greater than or equal to {check.minimum:g}",
                value,
                ge=check.minimum,
            )
        )
        return None
    if check.maximum is not None and number > check.maximum:
        errors.append(
            error_entry(
                "less_than_equal",
                loc,
                f"Input should be less than or equal to {check.maximum:g}",
                value,
                le=check.maximum,
            )
        )
        return None
    return number


def _parse_claim(
    claim: Any, loc: list[Any], columns: Columns, claim_ids: list[Any], errors: list[dict[str, Any]]
) -> None:
    if not isinstance(claim, dict):
        errors.append(error_entry("model_type", loc, "Input should be a claim object", claim))
        return
    before = len(errors)
    values: list[Any] = []
    for check in FEATURE_CHECKS:
        name = check.name
        if name not in claim:
            errors.append(error_entry("missing", [*loc, name], "Field required", None))
            continue
        value = claim[name]
        if check.kind == "category":
            if not isinstance(value, str):
                errors.append(
                    error_entry("string_type", [*loc, name], "Input should be a valid string", value)
                )
            elif value not in check.categories:
                expected = ", ".join(repr(c) for c in check.ordered_categories)
                errors.append(
                    error_entry(
                        "enum",
                        [*loc, name],
                        f"Input should be one of {expected}",
                        value,
                        expected=list(check.ordered_categories),
                    )
                )
            else:
                values.append(value)
            continue
        number = _check_number(check, value, [*loc, name], errors)
        if number is not None:
            values.append(number)
    for name in claim:
        if name not in ALLOWED_FIELDS:
            errors.append(
                error_entry("extra_forbidden", [*loc, name], "Extra inputs are not permitted", claim[name])
            )
    claim_id = claim.get(CLAIM_ID)
    if claim_id is not None and (isinstance(claim_id, bool) or not isinstance(claim_id, str | int)):
        errors.append(
            error_entry(
                "claim_id_type", [*loc, CLAIM_ID], "claim_id should be a string or an integer", claim_id
            )
        )
    if len(errors) > before:
        return
    billed, allowed = claim["billed_amount"], claim["allowed_amount"]
    if allowed > billed:
        errors.append(
            error_entry(
                "allowed_exceeds_billed",
                [*loc, "allowed_amount"],
                f"allowed_amount ({allowed:g}) should be less than or equal to billed_amount ({billed:g})",
                allowed,
                billed_amount=billed,
            )
        )
        return
    for name, value in zip(FEATURES, values, strict=True):
        columns[name].append(value)
    claim_ids.append(claim_id)


def parse_claims(claims: Sequence[Any], loc: Callable[[int], list[Any]]) -> ParsedRequest:
    """Validate claim objects given by another protocol (one dict per claim, ``loc(i)`` the
    location of the i-th) with the same checks as `/predict`; RequestError(422) lists the
    bad fields (at most MAX_ERRORS), 413 beyond MAX_BATCH_CLAIMS."""
    if not claims:
        raise RequestError(422, [error_entry("too_short", loc(0)[:-1], "At least 1 claim is required", [])])
    if len(claims) > MAX_BATCH_CLAIMS:
        raise RequestError(
            413,
            [
                error_entry(
                    "too_long",
                    loc(0)[:-1],
                    f"At most {MAX_BATCH_CLAIMS} claims per request, not {len(claims)}",
                    len(claims),
                    max_length=MAX_BATCH_CLAIMS,
                )
            ],
        )
    columns: Columns = {name: [] for name in FEATURES}
    claim_ids: list[Any] = []
    errors: list[dict[str, Any]] = []
    for index, claim in enumerate(claims):
        _parse_claim(claim, loc(index), columns, claim_ids, errors)
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise RequestError(422, errors[:MAX_ERRORS])
    return ParsedRequest(columns, len(claim_ids), claim_ids, True)


def body_too_large(size: int) -> RequestError:
    return RequestError(
        413,
        [
            error_entry(
                "body_too_large",
                ["body"],
                f"Request body exceeds {MAX_BODY_BYTES} bytes",
                size,
                max_bytes=MAX_BODY_BYTES,
            )
        ],
    )


def load_json(body: bytes, loads: Callable[[bytes], Any] = json.loads) -> Any:
    """The body's JSON; RequestError 413 when it is too large, 422 when it is not JSON."""
    if len(body) > MAX_BODY_BYTES:
        raise body_too_large(len(body))
    try:
        return loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RequestError(
            422, [error_entry("json_invalid", ["body"], f"JSON decode error: {exc}", None)]
        ) from exc


def parse_predict_body(body: bytes, loads: Callable[[bytes], Any] = json.loads) -> ParsedRequest:
    """Parse and validate a `/predict` body; raise RequestError (413 or 422) when it is bad."""
    payload = load_json(body, loads)
    columns: Columns = {name: [] for name in FEATURES}
    claim_ids: list[Any] = []
    errors: list[dict[str, Any]] = []
    if isinstance(payload, dict) and BATCH_KEY in payload:
        claims = payload[BATCH_KEY]
        extra = [k for k in payload if k != BATCH_KEY]
        if extra:
            raise RequestError(
                422,
                [
                    error_entry("extra_forbidden", ["body", k], "Extra inputs are not permitted", payload[k])
                    for k in extra
                ],
            )
        if not isinstance(claims, list):
            raise RequestError(
                422, [error_entry("list_type", ["body", BATCH_KEY], "Input should be a valid list", claims)]
            )
        if not claims:
            raise RequestError(
                422,
                [
                    error_entry(
                        "too_short",
                        ["body", BATCH_KEY],
                        "List should have at least 1 item",
                        claims,
                        min_length=1,
                    )
                ],
            )
        if len(claims) > MAX_BATCH_CLAIMS:
            raise RequestError(
                413,
                [
                    error_entry(
                        "too_long",
                        ["body", BATCH_KEY],
                        f"List should have at most {MAX_BATCH_CLAIMS} items, not {len(claims)}",
                        claims,
                        max_length=MAX_BATCH_CLAIMS,
                    )
                ],
            )
        for index, claim in enumerate(claims):
            _parse_claim(claim, ["body", BATCH_KEY, index], columns, claim_ids, errors)
            if len(errors) >= MAX_ERRORS:
                break
        batch = True
    else:
        _parse_claim(payload, ["body"], columns, claim_ids, errors)
        batch = False
    if errors:
        raise RequestError(422, errors[:MAX_ERRORS])
    return ParsedRequest(columns, len(claim_ids), claim_ids, batch)


def claim_json_schema() -> dict[str, Any]:
    """JSON Schema of one claim (for OpenAPI): the same rules parse_predict_body enforces."""
    properties: dict[str, Any] = {}
    for check in FEATURE_CHECKS:
        if check.kind == "category":
            properties[check.name] = {"type": "string", "enum": list(check.ordered_categories)}
        else:
            prop: dict[str, Any] = {"type": "integer" if check.kind == "int" else "number"}
            if check.minimum is not None:
                prop["minimum"] = check.minimum
            if check.maximum is not None:
                prop["maximum"] = check.maximum
            properties[check.name] = prop
    properties[CLAIM_ID] = {"type": ["string", "integer"], "description": "Echoed back with the prediction."}
    return {
        "type": "object",
        "properties": properties,
        "required": list(FEATURES),
        "additionalProperties": False,
        "description": "allowed_amount must not exceed billed_amount.",
    }


def predict_body_json_schema() -> dict[str, Any]:
    claim = claim_json_schema()
    batch = {
        "type": "object",
        "properties": {
            BATCH_KEY: {"type": "array", "items": claim, "minItems": 1, "maxItems": MAX_BATCH_CLAIMS}
        },
        "required": [BATCH_KEY],
        "additionalProperties": False,
    }
    return {"oneOf": [claim, batch]}


__all__ = [
    "BATCH_KEY",
    "CATEGORICAL_FEATURES",
    "MAX_BATCH_CLAIMS",
    "MAX_BODY_BYTES",
    "Columns",
    "ParsedRequest",
    "RequestError",
    "parse_predict_body",
]
