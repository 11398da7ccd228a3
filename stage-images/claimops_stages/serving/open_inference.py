"""The Open Inference Protocol v2 (REST; KServe's, Triton's and Seldon MLServer's dialect):
request parsing, response and metadata shapes. Pure; `app` wires the routes.

A request names one tensor per claim field, ``[N]`` or ``[N, 1]`` each, row-major:

    {"id": "r1", "inputs": [
       {"name": "cpt_bucket", "datatype": "BYTES", "shape": [2], "data": ["Surgery", "Radiology"]},
       {"name": "billed_amount", "datatype": "FP64", "shape": [2], "data": [1200.0, 310.5]}, ...],
     "outputs": [{"name": "probability_approved"}]}

Categories are BYTES (UTF-8 strings), amounts FP64/FP32 (or an integer type), the age an
integer type; an optional ``claim_id`` tensor (BYTES or an integer type) is checked like
`/predict`'s. After the tensor checks each row is validated by the same code as a `/predict`
claim, so the rules (categories, ranges, allowed <= billed) are one. The response has
``probability_approved`` (FP64) and ``outcome`` (BYTES: Approved | Denied) of shape ``[N]``.
Inputs may also come in the binary tensor extension (what `tritonclient` sends by default):
:func:`decode_binary_request` turns them into the JSON form first. Outputs are always JSON.
Errors answer 400 (413 over the batch limit) with the protocol's ``{"error": message}``; the
message names the tensor, the row and the fix, and ``details`` (an extension) lists them all
in `/predict`'s shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from claimops_stages.claims import CATEGORICAL_FEATURES, FEATURES
from claimops_stages.serving import protocols
from claimops_stages.serving.schema import (
    CLAIM_ID,
    ParsedRequest,
    RequestError,
    error_entry,
    load_json,
    location_text,
    parse_claims,
)

PROTOCOL = protocols.OPEN_INFERENCE_V2.name
OUTPUT_PROBABILITY, OUTPUT_OUTCOME = "probability_approved", "outcome"
OUTPUTS = (OUTPUT_PROBABILITY, OUTPUT_OUTCOME)
FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
#: The datatype each input declares in the model's metadata, and the ones it accepts.
DECLARED = {
    **dict.fromkeys(CATEGORICAL_FEATURES, "BYTES"),
    "billed_amount": "FP64",
    "allowed_amount": "FP64",
    "patient_age": "INT64",
}
ACCEPTED: dict[str, frozenset[str]] = {
    **{name: frozenset({"BYTES"}) for name in CATEGORICAL_FEATURES},
    "billed_amount": FLOAT_TYPES | INT_TYPES,
    "allowed_amount": FLOAT_TYPES | INT_TYPES,
    "patient_age": INT_TYPES,
    CLAIM_ID: INT_TYPES | {"BYTES"},
}
#: model_name/model_version: the KServe SDK repeats the path's in the body.
_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs", "model_name", "model_version"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "data", "parameters"})


@dataclass(frozen=True)
class ParsedInfer:
    """A valid infer request: the claims as columns, the request id, the outputs asked for
    (always as JSON: a client asking for the binary extension gets JSON data, which the
    protocol's clients read as well)."""

    parsed: ParsedRequest
    request_id: str | None
    outputs: tuple[str, ...]


def error_body(error: RequestError, inputs: Sequence[str] = ()) -> dict[str, Any]:
    """The protocol's error shape: one message naming where and what, every entry in details.
    ``inputs`` (the request's tensor names) turn a row location into the tensor's name."""

    def where(loc: list[Any]) -> str:
        if len(loc) >= 5 and loc[1] == "inputs" and isinstance(loc[2], int) and loc[2] < len(inputs):
            return f"input '{inputs[loc[2]]}' (inputs[{loc[2]}]) {'.'.join(str(p) for p in loc[3:])}"
        return location_text(loc)

    return {"error": error.summary(where), "details": error.detail}


def _flatten(data: Any) -> list[Any] | None:
    """Row-major data, nested ([[a], [b]]) or flat ([a, b]); None when it is not a list."""
    if not isinstance(data, list):
        return None
    if data and all(isinstance(item, list) for item in data):
        flat: list[Any] = []
        for item in data:
            inner = _flatten(item)
            if inner is None:
                return None
            flat.extend(inner)
        return flat
    return data


def _element_ok(datatype: str, value: Any) -> bool:
    if datatype == "BYTES":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if datatype in INT_TYPES:
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, int | float)


def _element_name(datatype: str) -> str:
    if datatype == "BYTES":
        return "a string"
    return "an integer" if datatype in INT_TYPES else "a number"


def _tensor_rows(index: int, tensor: Any, errors: list[dict[str, Any]]) -> tuple[str, list[Any]] | None:
    """(name, values) of one input tensor, or None after appending why it is bad."""
    loc: list[Any] = ["body", "inputs", index]
    if not isinstance(tensor, dict):
        errors.append(error_entry("model_type", loc, "Each input should be a tensor object", tensor))
        return None
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            errors.append(
                error_entry("missing", [*loc, key], f"Field required: every input names its {key}", None)
            )
    extra = sorted(set(tensor) - _INPUT_KEYS)
    for key in extra:
        errors.append(
            error_entry("extra_forbidden", [*loc, key], "Extra inputs are not permitted", tensor[key])
        )
    if any(key not in tensor for key in ("name", "shape", "datatype", "data")) or extra:
        return None
    name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
    if name not in ACCEPTED:
        errors.append(
            error_entry(
                "unknown_input",
                [*loc, "name"],
                f"No model input {name!r}; inputs: {', '.join((*FEATURES, CLAIM_ID))}",
                name,
            )
        )
        return None
    if datatype not in ACCEPTED[name]:
        wanted = DECLARED.get(name, "BYTES or INT64")
        errors.append(
            error_entry(
                "datatype",
                [*loc, "datatype"],
                f"Input {name!r} should have datatype {wanted} (accepted: {', '.join(sorted(ACCEPTED[name]))}),"
                f" not {datatype!r}",
                datatype,
            )
        )
        return None
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        errors.append(
            error_entry(
                "shape",
                [*loc, "shape"],
                f"Input {name!r} should have shape [N] or [N, 1], one value per claim",
                shape,
            )
        )
        return None
    values = _flatten(tensor["data"])
    if values is None:
        errors.append(
            error_entry("list_type", [*loc, "data"], f"Input {name!r}: data should be a list", tensor["data"])
        )
        return None
    if len(values) != math.prod(shape):
        errors.append(
            error_entry(
                "shape_mismatch",
                [*loc, "data"],
                f"Input {name!r} has shape {shape} ({math.prod(shape)} values) but {len(values)} data values",
                len(values),
            )
        )
        return None
    for row, value in enumerate(values):
        if not _element_ok(datatype, value):
            errors.append(
                error_entry(
                    "datatype_value",
                    [*loc, "data", row],
                    f"Input {name!r} is {datatype}: each value should be {_element_name(datatype)}",
                    value,
                )
            )
            return None
    if datatype in INT_TYPES:
        values = [int(v) for v in values]
    return str(name), values


#: Little-endian element formats of the binary tensor extension's fixed-size datatypes.
_BINARY_FORMATS = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4",
                   "INT64": "<i8", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8"}  # fmt: skip


def _bytes_elements(raw: bytes, where: list[Any]) -> list[str]:
    """BYTES elements of the binary extension: each a 4-byte little-endian length, then UTF-8."""
    values, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise RequestError(
                400, [error_entry("binary_data", where, "Truncated BYTES element length", None)]
            )
        size = int.from_bytes(raw[offset : offset + 4], "little")
        chunk = raw[offset + 4 : offset + 4 + size]
        if len(chunk) != size:
            raise RequestError(400, [error_entry("binary_data", where, "Truncated BYTES element", None)])
        try:
            values.append(chunk.decode())
        except UnicodeDecodeError as exc:
            raise RequestError(
                400, [error_entry("binary_data", where, "BYTES element is not UTF-8", None)]
            ) from exc
        offset += 4 + size
    return values


def decode_binary_request(body: bytes, header_length: int) -> Any:
    """A request of the binary tensor extension (Triton's, which `tritonclient` sends by
    default): the JSON header's first ``header_length`` bytes, then each input whose
    ``parameters.binary_data_size`` is set, in order. Returns the JSON form of the request."""
    if not 0 < header_length <= len(body):
        raise RequestError(
            400,
            [error_entry("binary_data", ["header", "inference-header-content-length"],
                         f"Inference-Header-Content-Length {header_length} is outside the body's {len(body)} bytes",
                         header_length)],
        )  # fmt: skip
    payload = load_json(body[:header_length])
    offset = header_length
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    for index, tensor in enumerate(inputs if isinstance(inputs, list) else []):
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(parameters, dict) or parameters.get("binary_data_size") is None:
            continue
        size = parameters["binary_data_size"]
        where: list[Any] = ["body", "inputs", index, "parameters", "binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(body):
            raise RequestError(
                400, [error_entry("binary_data", where, "binary_data_size exceeds the body", size)]
            )
        raw = body[offset : offset + size]
        offset += size
        datatype = tensor.get("datatype")
        if datatype == "BYTES":
            values: list[Any] = _bytes_elements(raw, where)
        elif datatype in _BINARY_FORMATS:
            dtype = np.dtype(_BINARY_FORMATS[datatype])
            if size % dtype.itemsize:
                message = f"binary_data_size {size} is not a whole number of {datatype} values"
                raise RequestError(400, [error_entry("binary_data", where, message, size)])
            values = np.frombuffer(raw, dtype=dtype).tolist()
        else:
            message = f"No binary form for datatype {datatype!r}"
            raise RequestError(400, [error_entry("binary_data", [*where[:3], "datatype"], message, datatype)])
        rest = {k: v for k, v in parameters.items() if k != "binary_data_size"}
        tensor["data"] = values
        tensor.pop("parameters")
        if rest:
            tensor["parameters"] = rest
    if offset != len(body):
        message = f"{len(body) - offset} bytes after the last binary input"
        raise RequestError(400, [error_entry("binary_data", ["body"], message, len(body) - offset)])
    return payload


def parse_infer_request(
    payload: Any, model_name: str | None = None, model_version: str | None = None
) -> ParsedInfer:
    """Validate an infer request (already JSON-decoded) sent to ``model_name`` (at
    ``model_version``, when the URL names one); RequestError 400/413 when it is bad."""
    if not isinstance(payload, dict):
        raise RequestError(
            400, [error_entry("model_type", ["body"], "The request should be a JSON object", payload)]
        )
    errors: list[dict[str, Any]] = [
        error_entry("extra_forbidden", ["body", key], "Extra inputs are not permitted", payload[key])
        for key in sorted(set(payload) - _REQUEST_KEYS)
    ]
    for key, expected in (("model_name", model_name), ("model_version", model_version)):
        given = payload.get(key)
        if given is not None and expected is not None and given != expected:
            errors.append(
                error_entry(
                    "path_mismatch",
                    ["body", key],
                    f"{key} {given!r} differs from the URL's {expected!r}",
                    given,
                )
            )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        errors.append(error_entry("string_type", ["body", "id"], "id should be a string", request_id))
    if "parameters" in payload and not isinstance(payload["parameters"], dict):
        errors.append(
            error_entry(
                "dict_type", ["body", "parameters"], "parameters should be an object", payload["parameters"]
            )
        )
    outputs = _requested_outputs(payload.get("outputs"), errors)
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        errors.append(
            error_entry(
                "missing",
                ["body", "inputs"],
                "inputs should be a non-empty list of tensors, one per claim field",
                inputs,
            )
        )
        raise RequestError(400, errors)
    tensors: dict[str, tuple[int, list[Any]]] = {}
    for index, tensor in enumerate(inputs):
        found = _tensor_rows(index, tensor, errors)
        if found is None:
            continue
        name, values = found
        if name in tensors:
            errors.append(
                error_entry(
                    "duplicate", ["body", "inputs", index, "name"], f"Input {name!r} is given twice", name
                )
            )
            continue
        tensors[name] = (index, values)
    for name in FEATURES:
        if name not in tensors and not any(e["type"] == "unknown_input" for e in errors):
            errors.append(
                error_entry(
                    "missing", ["body", "inputs"], f"Input {name!r} is required ({DECLARED[name]})", None
                )
            )
    if errors:
        raise RequestError(400, errors)
    sizes = {name: len(values) for name, (_, values) in tensors.items()}
    if len(set(sizes.values())) != 1:
        raise RequestError(
            400,
            [
                error_entry(
                    "shape_mismatch",
                    ["body", "inputs"],
                    "Every input should have the same number of claims; got "
                    + ", ".join(f"{n}: {s}" for n, s in sizes.items()),
                    sizes,
                )
            ],
        )
    rows = next(iter(sizes.values()))
    claims = [{name: values[row] for name, (_, values) in tensors.items()} for row in range(rows)]
    position = {name: index for name, (index, _) in tensors.items()}
    try:
        parsed = parse_claims(claims, lambda row: ["body", "rows", row])
    except RequestError as exc:
        raise RequestError(
            400 if exc.status == 422 else exc.status, [_to_tensor_loc(e, position) for e in exc.detail]
        ) from exc
    return ParsedInfer(parsed, request_id, outputs)


def _to_tensor_loc(entry: Mapping[str, Any], position: Mapping[str, int]) -> dict[str, Any]:
    """A claim-shaped location (body.rows.3.billed_amount) as the tensor's (body.inputs.2.data.3)."""
    loc = list(entry.get("loc") or [])
    if len(loc) == 4 and loc[1] == "rows" and loc[3] in position:
        loc = ["body", "inputs", position[loc[3]], "data", loc[2]]
    elif len(loc) >= 2 and loc[1] == "rows":
        loc = ["body", "inputs"]
    return {**entry, "loc": loc}


def _requested_outputs(outputs: Any, errors: list[dict[str, Any]]) -> tuple[str, ...]:
    if outputs is None:
        return OUTPUTS
    if not isinstance(outputs, list):
        errors.append(
            error_entry(
                "list_type", ["body", "outputs"], 'outputs should be a list of {"name": ...}', outputs
            )
        )
        return OUTPUTS
    names = []
    for index, output in enumerate(outputs):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            errors.append(
                error_entry(
                    "unknown_output",
                    ["body", "outputs", index, "name"],
                    f"No model output {name!r}; outputs: {', '.join(OUTPUTS)}",
                    output,
                )
            )
            continue
        names.append(str(name))
    return tuple(names) or OUTPUTS


def infer_response(
    model_name: str, version: str, request_id: str | None, outputs: Sequence[str],
    probabilities: list[float], outcomes: list[str], arm: str,
) -> dict[str, Any]:  # fmt: skip
    """The infer response: the outputs asked for, each of shape [N]."""
    tensors = {
        OUTPUT_PROBABILITY: {
            "name": OUTPUT_PROBABILITY,
            "datatype": "FP64",
            "shape": [len(probabilities)],
            "data": probabilities,
        },
        OUTPUT_OUTCOME: {
            "name": OUTPUT_OUTCOME,
            "datatype": "BYTES",
            "shape": [len(outcomes)],
            "data": outcomes,
        },
    }
    body: dict[str, Any] = {
        "model_name": model_name,
        "model_version": version,
        "parameters": {"arm": arm},
        "outputs": [tensors[name] for name in outputs],
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def model_metadata(model_name: str, versions: Sequence[str], platform: str) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the inputs a request gives and the outputs it gets."""
    return {
        "name": model_name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [{"name": name, "datatype": DECLARED[name], "shape": [-1]} for name in FEATURES],
        "outputs": [
            {"name": OUTPUT_PROBABILITY, "datatype": "FP64", "shape": [-1]},
            {"name": OUTPUT_OUTCOME, "datatype": "BYTES", "shape": [-1]},
        ],
    }


def infer_request_json_schema() -> dict[str, Any]:
    """JSON Schema of an infer request (for OpenAPI; the parser checks more: ranges, sizes)."""
    tensor = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": [*FEATURES, CLAIM_ID]},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "minItems": 1,
                "maxItems": 2,
            },
            "datatype": {"type": "string", "enum": sorted(FLOAT_TYPES | INT_TYPES | {"BYTES"})},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
        "required": ["name", "shape", "datatype", "data"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "enum": list(OUTPUTS)}},
                },
            },
        },
        "required": ["inputs"],
        "additionalProperties": False,
    }
