"""The Open Inference Protocol (V2) as Triton serves it, with the binary tensor extension.

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
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

import nnspec
from nnspec.runtime.repository import RepositoryError, check_name, triton_config
from nnspec.preprocessing import InputError
from nnspec.runtime.session import ModelSession

from .deps import BINARY, JSON, State, accepts, leased_model
from .errors import ApiError
from .payloads import json_object, json_response, parse_body
from .routing import AdminRouter, ModelRouter
from .schemas import (ErrorResponse, InferRequest, InferResponse, ModelMetadata, RepositoryEntry,
                      ServerMetadata, json_body)
from .store import ModelLease

HEADER_LENGTH = "inference-header-content-length"
_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 503)}

health = APIRouter(tags=["V2 health"], responses=_ERRORS)  # open, like Triton's health endpoints
router = ModelRouter(tags=["Open Inference Protocol (V2)"], responses=_ERRORS)
admin = AdminRouter(tags=["Open Inference Protocol (V2)"], responses=_ERRORS)  # repository load and unload
# Request bodies of infer and the repository routes: JSON, or the binary tensor extension's
# application/octet-stream, which tritonclient.http.aio also sends for JSON bodies.
TRITON_BODIES = [accepts(JSON, BINARY)]


# --- health and metadata ----------------------------------------------------------------------

@health.get("/v2", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> Response:
    """Server name, version and protocol extensions."""
    return json_response({"name": "nnspec", "version": nnspec.__version__,
                          "extensions": ["binary_tensor_data", "model_repository"]})


@health.get("/v2/health/live", summary="Liveness")
async def live() -> Response:
    """200 while the process serves HTTP."""
    return json_response({"live": True})


@health.get("/v2/health/ready", summary="Readiness")
async def ready(state: State) -> Response:
    """200 once startup loading is done and no model in the repository failed to load."""
    failed = state.store.failures()
    if failed:
        raise ApiError(503, f"models failed to load: {sorted(failed)}")
    return json_response({"ready": True})


def _metadata(sessions: dict[int, ModelSession], session: ModelSession) -> dict:
    def tensor(spec: dict) -> dict:
        return {"name": spec["name"], "datatype": "INT64" if spec.get("dtype") == "int64" else "FP32",
                "shape": [-1, *spec.get("shape", [])]}

    return {"name": session.name, "versions": [str(v) for v in sessions], "platform": "onnxruntime_onnx",
            "inputs": [tensor(session.manifest["input"])], "outputs": [tensor(o) for o in session.outputs]}


@router.get("/v2/models/{name}", response_model=ModelMetadata, summary="Model metadata")
async def model_metadata(name: str, state: State) -> Response:
    """Inputs and outputs with V2 datatypes; -1 is the batch axis."""
    return json_response(_metadata(*state.store.resolve(name, None)))


@router.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata, summary="Version metadata")
async def version_metadata(name: str, version: str, state: State) -> Response:
    """Metadata of one version."""
    return json_response(_metadata(*state.store.resolve(name, version)))


async def _ready(state: State, name: str, version: str | None) -> Response:
    try:
        state.store.resolve(name, version)
    except ApiError as exc:
        if exc.status == 404:  # Triton answers "not ready" with 400
            raise ApiError(400, exc.message) from None
        raise
    return json_response({"name": name, "ready": True})


@health.get("/v2/models/{name}/ready", summary="Model readiness")
async def model_ready(name: str, state: State) -> Response:
    """200 when the model is loaded, else 400."""
    return await _ready(state, name, None)


@health.get("/v2/models/{name}/versions/{version}/ready", summary="Version readiness")
async def version_ready(name: str, version: str, state: State) -> Response:
    """200 when that version is loaded, else 400."""
    return await _ready(state, name, version)


@router.get("/v2/models/{name}/config", summary="Triton model config")
async def model_config(name: str, state: State) -> Response:
    """Triton's model config (JSON form of config.pbtxt): max_batch_size, input, output, dynamic_batching."""
    return json_response(triton_config(state.store.resolve(name, None)[1].manifest) | {"name": name})


@router.get("/v2/models/{name}/versions/{version}/config", summary="Triton model config of a version")
async def version_config(name: str, version: str, state: State) -> Response:
    """The config of one version."""
    return json_response(triton_config(state.store.resolve(name, version)[1].manifest) | {"name": name})


# --- inference --------------------------------------------------------------------------------

def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_infer(body: bytes, header_length: str | None, session: ModelSession,
                 max_instances: int) -> tuple[np.ndarray, dict, list[tuple[str, bool]]]:
    """The request's input batch, its JSON header, and the outputs to return (name, binary?)."""
    binary = b""
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
    if shape[0] > max_instances:
        raise ApiError(413, f"too many instances: {shape[0]} > {max_instances}")
    count = math.prod(shape)
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "inputs[0].parameters must be an object")
    size = params.get("binary_data_size")
    if size is not None:
        if not _int(size) or size != 4 * count:
            raise ApiError(400, f"inputs[0]: binary_data_size must be {4 * count} for shape {shape}, got {size!r}")
        if len(binary) != size:
            raise ApiError(400, f"inputs[0]: expected {size} bytes of binary data, got {len(binary)}")
        x = np.frombuffer(binary, dtype="<f4").reshape(shape).astype(np.float32, copy=False)
    else:
        if len(binary):
            raise ApiError(400, "binary data sent but no input has binary_data_size")
        data = tensor.get("data")
        try:
            x = np.asarray(data)
        except (ValueError, TypeError):
            x = None
        if not isinstance(data, list) or x is None or x.dtype.kind not in "iuf":
            raise ApiError(400, "inputs[0].data: expected a flat or nested list of numbers")
        if x.size != count:
            raise ApiError(400, f"inputs[0].data: {x.size} values do not fill shape {shape}")
        x = x.reshape(shape)
    try:
        x = session.check_batch(x, "inputs[0].data")
    except InputError as exc:
        raise ApiError(400, str(exc)) from None

    all_binary = parameters.get("binary_data_output", False)
    if not isinstance(all_binary, bool):
        raise ApiError(400, "parameters.binary_data_output must be a boolean")
    wanted = request.get("outputs")
    if wanted is None:
        return x, request, [(name, all_binary) for name in session.output_names]
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
    return x, request, outputs


def _infer_response(lease: ModelLease, request: dict, outputs: list[tuple[str, bool]],
                    results: dict[str, np.ndarray]) -> Response:
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
    response = {"model_name": lease.session.name, "model_version": str(lease.version), "outputs": tensors}
    if "id" in request:
        response["id"] = request["id"]
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})


async def _infer(request: Request, name: str, version: str | None = None) -> Response:
    with leased_model(request, name, version) as (state, lease):
        if request.headers.get("content-encoding", "identity") != "identity":
            raise ApiError(400, "compressed requests are not supported")
        x, parsed, outputs = await parse_body(_parse_infer, await request.body(), request.headers.get(HEADER_LENGTH),
                                              lease.session, state.settings.max_instances)
        return _infer_response(lease, parsed, outputs, await lease.infer(x))


_INFER_DOC = dict(response_model=InferResponse, openapi_extra=json_body(InferRequest), dependencies=TRITON_BODIES)


@router.inference("/v2/models/{name}/infer", summary="Infer", **_INFER_DOC)
async def infer(request: Request, name: str) -> Response:
    """JSON tensors (flat or nested `data`) or the binary tensor extension."""
    return await _infer(request, name, None)


@router.inference("/v2/models/{name}/versions/{version}/infer", summary="Infer with one version", **_INFER_DOC)
async def infer_version(request: Request, name: str, version: str) -> Response:
    """Like `/infer`, with a fixed model version."""
    return await _infer(request, name, version)


# --- repository -------------------------------------------------------------------------------

def _check_name(name: str) -> None:
    try:
        check_name(name)
    except RepositoryError as exc:
        raise ApiError(400, str(exc)) from None


async def _optional_json(request: Request) -> dict:
    body = await request.body()
    if not body.strip():
        return {}
    return json_object(body)


@router.post("/v2/repository/index", response_model=list[RepositoryEntry], summary="Repository index",
             dependencies=TRITON_BODIES)
async def repository_index(request: Request, state: State) -> Response:
    """Every model in the repository with its state; `{"ready": true}` lists only loaded ones."""
    payload = await _optional_json(request)
    entries = await run_in_threadpool(state.store.index)
    if payload.get("ready") is True:
        entries = [e for e in entries if e["state"] == "READY"]
    return json_response(entries)


@admin.post("/v2/repository/models/{name}/load", summary="Load or reload a model", dependencies=TRITON_BODIES)
async def load_model(name: str, request: Request, state: State) -> Response:
    """(Re)load the model's newest versions from the repository; requests in flight finish."""
    payload = await _optional_json(request)
    params = payload.get("parameters") or {}
    if not isinstance(params, dict) or params.get("config") is not None or any(k.startswith("file:") for k in params):
        raise ApiError(400, "load parameters (config override, files) are not supported")
    _check_name(name)
    try:
        versions = await run_in_threadpool(state.store.load, name)  # ApiError 404 without a complete version
    except (OSError, ValueError) as exc:  # a broken version: unreadable manifest or model
        raise ApiError(400, f"failed to load {name!r}: {str(exc)[:300]}") from None
    return json_response({"name": name, "versions": [str(v) for v in versions]})


@admin.post("/v2/repository/models/{name}/unload", summary="Unload a model", dependencies=TRITON_BODIES)
async def unload_model(name: str, request: Request, state: State) -> Response:
    """Stop serving the model; requests in flight finish."""
    await _optional_json(request)
    _check_name(name)
    if not state.store.unload(name):
        raise ApiError(404, f"model {name!r} is not loaded")
    return json_response({"name": name})
