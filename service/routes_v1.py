"""KServe V1 / TF-Serving style endpoints: `{"instances": [...]}` in, `{"predictions": [...]}` out."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import orjson
from fastapi import File, Request, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.responses import Response

from nnspec.preprocessing import InputError, PixelBudgetError
from nnspec.runtime.session import ModelSession

from .deps import MULTIPART, LatestModel, State, accepts, leased_model
from .errors import ApiError
from .payloads import OFFLOAD_BYTES, check_rows, json_response, request_body
from .routing import ModelRouter
from .schemas import ErrorResponse, ModelInfo, ModelList, PredictRequest, PredictResponse, json_body
from .settings import Settings


class _Name(StringConvertor):
    """A path segment without ':', so `GET /v1/models/x:predict` is the POST route asked with GET (405),
    not the metadata of a model named `x:predict`."""

    regex = "[^/:]+"


register_url_convertor("v1_name", _Name())

router = ModelRouter(tags=["KServe V1"],
                     responses={code: {"model": ErrorResponse} for code in (400, 401, 404, 408, 413, 415, 503)})


def _instances(body: bytes, session: ModelSession, max_instances: int) -> object:
    """The `instances` of a :predict body, their number checked."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise ApiError(400, 'expected a JSON object {"instances": [...]}')
    instances = payload["instances"]
    if isinstance(instances, list):
        check_rows(len(instances), session, max_instances, "instances")
    return instances


def _encode(instances: object, session: ModelSession, max_pixels: int) -> np.ndarray:
    try:
        return session.encode_instances(instances, max_pixels=max_pixels)
    except PixelBudgetError as exc:
        raise ApiError(413, str(exc)) from None
    except InputError as exc:
        raise ApiError(400, str(exc)) from None


def _decode_instances(body: bytes, session: ModelSession, settings: Settings) -> np.ndarray:
    return _encode(_instances(body, session, settings.max_instances), session, settings.max_pixels)


async def _decode(body: bytes, session: ModelSession, settings: Settings) -> np.ndarray:
    """The input batch of a :predict body: parsed and encoded in a worker thread when the body is big or
    holds image files (a small PNG can take longer to decode than a big body to parse), else inline."""
    if len(body) > OFFLOAD_BYTES:
        return await run_in_threadpool(_decode_instances, body, session, settings)
    instances = _instances(body, session, settings.max_instances)
    if session.holds_image_files(instances):
        return await run_in_threadpool(_encode, instances, session, settings.max_pixels)
    return _encode(instances, session, settings.max_pixels)


async def _predict(request: Request, name: str, version: str | None = None) -> Response:
    with leased_model(request, name, version) as lease:
        x = await _decode(await request_body(request), lease.session, lease.store.settings)
        predictions = lease.session.format_predictions(await lease.infer(x))
        return json_response({"predictions": predictions}, {"x-model-version": str(lease.version)})


@router.inference("/v1/models/{name}:predict", response_model=PredictResponse,
                  openapi_extra=json_body(PredictRequest), summary="Predict with the latest version")
async def predict(request: Request, name: str) -> Response:
    """Instances are nested arrays of the input shape, or objects of named features for tables."""
    return await _predict(request, name, None)


@router.inference("/v1/models/{name}/versions/{version}:predict", response_model=PredictResponse,
                  openapi_extra=json_body(PredictRequest), summary="Predict with one version")
async def predict_version(request: Request, name: str, version: str) -> Response:
    """Like `:predict`, with a fixed model version."""
    return await _predict(request, name, version)


@router.post("/v1/models/{name}:classify", response_model=PredictResponse, summary="Classify image files",
             dependencies=[accepts(MULTIPART)])
async def classify(lease: LatestModel, state: State,
                   files: Annotated[list[UploadFile], File(description="image files (PNG, JPEG, ...)")]) -> Response:
    """Decode, convert and resize each image as the manifest says, then predict."""
    session = lease.session
    if not session.image:
        raise ApiError(400, f"model {session.name!r} does not take images; use :predict")
    check_rows(len(files), session, state.settings.max_instances, "files")
    images = [await f.read() for f in files]
    try:
        x = await run_in_threadpool(session.encode_images, images, "files", state.settings.max_pixels)
    except PixelBudgetError as exc:
        raise ApiError(413, str(exc)) from None
    except InputError as exc:
        raise ApiError(400, str(exc)) from None
    predictions = session.format_predictions(await lease.infer(x))
    for prediction, upload in zip(predictions, files):
        prediction["file"] = upload.filename
    return json_response({"predictions": predictions}, {"x-model-version": str(lease.version)})


@router.get("/v1/models", response_model=ModelList, summary="List served models")
async def list_served(state: State) -> Response:
    """Names of the loaded models."""
    return json_response({"models": list(state.store.loaded())})


@router.get("/v1/models/{name:v1_name}", response_model=ModelInfo, summary="Model status and metadata")
async def model_info(name: str, state: State) -> Response:
    """Readiness, loaded versions and the latest version's metadata (input, features, labels...)."""
    sessions, latest = state.store.resolve(name)
    return json_response({"name": name, "ready": True, "versions": list(sessions), "metadata": latest.metadata()})
