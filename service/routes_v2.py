"""The Open Inference Protocol (V2) routes as Triton serves them: health, metadata, inference (its
tensors in `v2_tensors`) and the model repository extension."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

import nnspec
from nnspec.runtime.repository import RepositoryError, check_name, triton_config
from nnspec.runtime.session import ModelSession

from .deps import BINARY, JSON, State, accepts, leased_model
from .errors import ApiError, hide_paths
from .payloads import json_object, json_response, parse_body, request_body
from .routing import AdminRouter, ModelRouter
from .schemas import (ErrorResponse, InferRequest, InferResponse, ModelMetadata, RepositoryEntry,
                      ServerMetadata, json_body)
from .v2_tensors import HEADER_LENGTH, infer_response, parse_infer

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 408, 413, 415, 503)}

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
    """200 once startup loading is done and every model that was loaded serves a version."""
    unready = state.store.unready()
    if unready:
        raise ApiError(503, f"models failed to load: {unready}")
    return json_response({"ready": True})


def _metadata(sessions: dict[int, ModelSession], session: ModelSession) -> dict:
    def tensor(spec: dict) -> dict:
        return {"name": spec["name"], "datatype": "INT64" if spec.get("dtype") == "int64" else "FP32",
                "shape": [-1, *spec.get("shape", [])]}

    metadata = {"name": session.name, "versions": [str(v) for v in sessions], "platform": "onnxruntime_onnx",
                "inputs": [tensor(session.manifest["input"])], "outputs": [tensor(o) for o in session.outputs]}
    if session.features:  # the raw features, each of which may be sent as an input of its own
        metadata["parameters"] = {"features": [_feature_tensor(f) for f in session.features]}
    return metadata


def _feature_tensor(feature: dict) -> dict:
    if feature.get("type") == "categorical":
        return {"name": feature["name"], "datatype": "BYTES", "shape": [-1], "categories": feature["categories"]}
    return {"name": feature["name"], "datatype": "FP32", "shape": [-1]}


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

async def _infer(request: Request, name: str, version: str | None = None) -> Response:
    with leased_model(request, name, version) as lease:
        body = await request_body(request)
        x, parsed, outputs = await parse_body(parse_infer, body, request.headers.get(HEADER_LENGTH),
                                              lease.session, lease.store.settings.max_instances)
        return infer_response(lease.session.name, lease.version, parsed, outputs, await lease.infer(x))


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
    body = await request_body(request)
    if not body.strip():
        return {}
    return json_object(body)


@router.post("/v2/repository/index", response_model=list[RepositoryEntry], summary="Repository index",
             dependencies=TRITON_BODIES)
async def repository_index(request: Request, state: State) -> Response:
    """An entry per loaded or failed version (with the reason), one per other model in the repository;
    `{"ready": true}` lists only loaded versions."""
    payload = await _optional_json(request)
    entries = await run_in_threadpool(state.store.index)  # reasons name <model>/<version>, never a server path
    if payload.get("ready") is True:
        entries = [e for e in entries if e["state"] == "READY"]
    return json_response(entries)


@admin.post("/v2/repository/models/{name}/load", summary="Load or reload a model", dependencies=TRITON_BODIES)
async def load_model(name: str, request: Request, state: State) -> Response:
    """(Re)load the model's newest versions that load; 400 names those that failed. Requests in flight finish."""
    payload = await _optional_json(request)
    params = payload.get("parameters") or {}
    if not isinstance(params, dict) or params.get("config") is not None or any(k.startswith("file:") for k in params):
        raise ApiError(400, "load parameters (config override, files) are not supported")
    _check_name(name)
    try:
        versions = await run_in_threadpool(state.store.load, name)  # ApiError 404 without a complete version
    except (OSError, ValueError) as exc:  # a broken version (LoadError names the model and version)
        reason = hide_paths(str(exc), state.settings.repository)
        raise ApiError(400, f"failed to load {name!r}: {reason[:300]}") from None
    return json_response({"name": name, "versions": [str(v) for v in versions]})


@admin.post("/v2/repository/models/{name}/unload", summary="Unload a model", dependencies=TRITON_BODIES)
async def unload_model(name: str, request: Request, state: State) -> Response:
    """Stop serving the model and forget its load failures; requests in flight finish."""
    await _optional_json(request)
    _check_name(name)
    if not await run_in_threadpool(state.store.unload, name):  # waits for a load of the model in progress
        raise ApiError(404, f"model {name!r} is not loaded")
    return json_response({"name": name})
