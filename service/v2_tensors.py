"""The Open Inference Protocol's (V2) tensors, as Triton reads and writes them: a request's inputs
into the model's input batch, and the outputs into the answer, with the binary tensor extension.

A binary request is the JSON header followed by the raw tensors; the header's length is in
`Inference-Header-Content-Length`, each binary input has `parameters.binary_data_size`. An
output is returned binary when it asks for `binary_data`, or all are with the request
parameter `binary_data_output` (what `tritonclient.http` sends by default).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from nnspec.preprocessing import InputError
from nnspec.runtime.session import ModelSession

from .errors import ApiError
from .payloads import check_rows, json_object

HEADER_LENGTH = "inference-header-content-length"
_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


_NUMBERS = {"FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}  # what a numeric raw feature may be


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_infer(body: bytes, header_length: str | None, session: ModelSession,
                 max_instances: int) -> tuple[np.ndarray, dict, list[tuple[str, bool]]]:
    """The request's input batch, its JSON header, and the outputs to return (name, binary?)."""
    binary = memoryview(b"")
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or not 0 < int(header_length) <= len(body):
            raise ApiError(400, f"Inference-Header-Content-Length {header_length!r} does not fit the "
                                f"{len(body)}-byte body")
        body, binary = body[:int(header_length)], memoryview(body)[int(header_length):]
    request = json_object(body, "inference request header")
    if "id" in request and not isinstance(request["id"], str):
        raise ApiError(400, "id must be a string")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ApiError(400, "parameters must be an object")
    inputs = request.get("inputs")
    if session.features and isinstance(inputs, list) and [_name(t) for t in inputs] != [session.input_name]:
        x = _feature_batch(inputs, binary, session, max_instances)
    else:
        x = _input_batch(inputs, binary, session, max_instances)
    return x, request, _outputs(request, parameters, session)


def _name(tensor: object) -> object:
    return tensor.get("name") if isinstance(tensor, dict) else None


def _input_batch(inputs: object, binary: memoryview, session: ModelSession, max_instances: int) -> np.ndarray:
    """The batch from the model's one input tensor: FP32 [N, *input shape]."""
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ApiError(400, f"expected exactly one input, {session.input_name!r}")
    tensor = inputs[0]
    if tensor.get("name") != session.input_name:
        raise ApiError(400, f"unexpected inference input {tensor.get('name')!r} for model {session.name!r}; "
                            f"expected {session.input_name!r}")
    if tensor.get("datatype") != "FP32":
        raise ApiError(400, f"inputs[0].datatype: expected FP32, got {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    expected = [-1, *session.input_shape]
    if (not isinstance(shape, list) or not all(_int(d) for d in shape) or len(shape) != len(expected)
            or tuple(shape[1:]) != session.input_shape or not 1 <= shape[0]):
        raise ApiError(400, f"inputs[0].shape: expected {expected}, got {shape!r}")
    check_rows(shape[0], session, max_instances, "rows")
    (blob,) = _blobs([_binary_size(0, tensor, "FP32", shape)], binary)
    try:
        return session.check_batch(_values(0, tensor, "FP32", shape, blob), "inputs[0].data")
    except InputError as exc:
        raise ApiError(400, str(exc)) from None


def _feature_batch(inputs: list, binary: memoryview, session: ModelSession, max_instances: int) -> np.ndarray:
    """The batch from one input per raw table feature, each [N] or [N, 1]: BYTES for a categorical
    feature, a number type for a numeric one."""
    kinds = {f["name"]: f.get("type") for f in session.features}
    expected = f"expected {session.input_name!r} or one input per raw feature {list(kinds)}"
    names = [_name(t) for t in inputs]
    for i, name in enumerate(names):
        if name not in kinds:
            raise ApiError(400, f"inputs[{i}]: unexpected input {name!r} for model {session.name!r}; {expected}")
        if name in names[:i]:
            raise ApiError(400, f"inputs[{i}]: input {name!r} given twice")
    missing = [name for name in kinds if name not in names]
    if missing:
        raise ApiError(400, f"inputs: missing raw feature {missing[0]!r}; {expected}")
    rows, sizes = None, []
    for i, tensor in enumerate(inputs):
        allowed = ("BYTES",) if kinds[names[i]] == "categorical" else tuple(_NUMBERS)
        if tensor.get("datatype") not in allowed:
            raise ApiError(400, f"inputs[{i}].datatype: expected {' or '.join(allowed)} for feature {names[i]!r}, "
                                f"got {tensor.get('datatype')!r}")
        shape = tensor.get("shape")
        if not (isinstance(shape, list) and 1 <= len(shape) <= 2 and all(_int(d) for d in shape)
                and shape[0] >= 1 and shape[1:] in ([], [1])):
            raise ApiError(400, f"inputs[{i}].shape: expected [-1] or [-1, 1] (one value per row), got {shape!r}")
        if rows is None:
            rows = shape[0]
            check_rows(rows, session, max_instances, "rows")
        elif shape[0] != rows:
            raise ApiError(400, f"inputs[{i}].shape: {shape[0]} rows, but inputs[0] has {rows}")
        sizes.append(_binary_size(i, tensor, tensor["datatype"], shape))
    blobs = _blobs(sizes, binary)
    columns = {name: _values(i, tensor, tensor["datatype"], tensor["shape"], blob).reshape(-1)
               for i, (name, tensor, blob) in enumerate(zip(names, inputs, blobs))}
    try:
        return session.encode_feature_columns(columns, {name: f"inputs[{i}].data" for i, name in enumerate(names)})
    except InputError as exc:
        raise ApiError(400, str(exc)) from None


def _binary_size(i: int, tensor: dict, datatype: str, shape: list[int]) -> int | None:
    """inputs[i]'s `parameters.binary_data_size`, checked against its datatype and shape; None: JSON data."""
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(400, f"inputs[{i}].parameters must be an object")
    size = params.get("binary_data_size")
    if size is None:
        return None
    if datatype == "BYTES":  # each element: a 4-byte little-endian length, then its bytes
        if not _int(size) or size < 4 * math.prod(shape):
            raise ApiError(400, f"inputs[{i}]: binary_data_size must hold {math.prod(shape)} BYTES elements, "
                                f"got {size!r}")
        return size
    expected = np.dtype(_NUMBERS[datatype]).itemsize * math.prod(shape)
    if not _int(size) or size != expected:
        raise ApiError(400, f"inputs[{i}]: binary_data_size must be {expected} for shape {shape}, got {size!r}")
    return size


def _blobs(sizes: list[int | None], binary: memoryview) -> list[memoryview | None]:
    """The binary part cut into each input's bytes, in input order (None for an input sent as JSON)."""
    if all(size is None for size in sizes):
        if len(binary):
            raise ApiError(400, "binary data sent but no input has binary_data_size")
        return list(sizes)
    total = sum(size for size in sizes if size is not None)
    if len(binary) != total:
        raise ApiError(400, f"expected {total} bytes of binary data (the inputs' binary_data_size), "
                            f"got {len(binary)}")
    blobs, offset = [], 0
    for size in sizes:
        blobs.append(None if size is None else binary[offset:offset + size])
        offset += size or 0
    return blobs


def _values(i: int, tensor: dict, datatype: str, shape: list[int], blob: memoryview | None) -> np.ndarray:
    """inputs[i]'s values in `shape`: from its binary bytes, or from its JSON `data` (flat or nested)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        strings = _json_strings(i, tensor.get("data"), count) if blob is None else _binary_strings(i, blob, count)
        return np.array(strings, dtype=object).reshape(shape)
    if blob is not None:
        return np.frombuffer(blob, dtype=_NUMBERS[datatype]).reshape(shape)
    data = tensor.get("data")
    try:
        x = np.asarray(data)
    except (ValueError, TypeError):
        x = None
    if x is not None and x.dtype == object and _numbers_or_nulls(x):
        x = x.astype(np.float64)  # JSON has no NaN: null is a missing value (filled where the model does, else refused)
    if not isinstance(data, list) or x is None or x.dtype.kind not in "iuf":
        raise ApiError(400, f"inputs[{i}].data: expected a flat or nested list of numbers")
    if x.size != count:
        raise ApiError(400, f"inputs[{i}].data: {x.size} values do not fill shape {shape}")
    return x.reshape(shape)


def _numbers_or_nulls(x: np.ndarray) -> bool:
    return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in x.ravel().tolist())


def _json_strings(i: int, data: object, count: int) -> list[str]:
    if isinstance(data, list) and data and all(isinstance(v, list) and len(v) == 1 for v in data):
        data = [v[0] for v in data]  # one per row, [N, 1]
    if not isinstance(data, list) or len(data) != count or not all(isinstance(v, str) for v in data):
        raise ApiError(400, f"inputs[{i}].data: expected {count} strings, one per row")
    return data


def _binary_strings(i: int, blob: memoryview, count: int) -> list[str]:
    strings, offset = [], 0
    for k in range(count):
        size = int.from_bytes(blob[offset:offset + 4], "little")
        offset += 4
        if offset + size > len(blob):
            raise ApiError(400, f"inputs[{i}]: BYTES element {k} runs past the input's binary_data_size")
        try:
            strings.append(str(blob[offset:offset + size], "utf-8"))
        except UnicodeDecodeError:
            raise ApiError(400, f"inputs[{i}]: BYTES element {k} is not UTF-8 text") from None
        offset += size
    if offset != len(blob):
        raise ApiError(400, f"inputs[{i}]: {len(blob) - offset} bytes left after its {count} BYTES elements")
    return strings


def _outputs(request: dict, parameters: dict, session: ModelSession) -> list[tuple[str, bool]]:
    """The outputs to return, each with whether it goes binary."""
    all_binary = parameters.get("binary_data_output", False)
    if not isinstance(all_binary, bool):
        raise ApiError(400, "parameters.binary_data_output must be a boolean")
    wanted = request.get("outputs")
    if wanted is None:
        return [(name, all_binary) for name in session.output_names]
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise ApiError(400, "outputs must be a list of objects")
    outputs = []
    for i, output in enumerate(wanted):
        name, params = output.get("name"), output.get("parameters") or {}
        if name not in session.output_names:
            raise ApiError(400, f"outputs[{i}]: unknown output {name!r}; expected one of {session.output_names}")
        if not isinstance(params, dict) or not isinstance(params.get("binary_data", all_binary), bool):
            raise ApiError(400, f"outputs[{i}].parameters.binary_data must be a boolean")
        if "classification" in params:
            raise ApiError(400, f"outputs[{i}]: the classification extension is not supported")
        if name in (n for n, _ in outputs):
            raise ApiError(400, f"outputs[{i}]: output {name!r} requested twice")
        outputs.append((name, params.get("binary_data", all_binary)))
    return outputs


def infer_response(model: str, version: int, request: dict, outputs: list[tuple[str, bool]],
                   results: dict[str, np.ndarray]) -> Response:
    """The answer: JSON tensors, or a JSON header followed by the binary outputs asked for."""
    tensors, blobs = [], []
    for name, binary in outputs:
        value = results[name]
        entry = {"name": name, "datatype": _DATATYPES[value.dtype], "shape": list(value.shape)}
        if binary:
            blob = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = np.ascontiguousarray(value).reshape(-1)
        tensors.append(entry)
    response = {"model_name": model, "model_version": str(version), "outputs": tensors}
    if "id" in request:
        response["id"] = request["id"]
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})
