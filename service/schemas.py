"""Request and response models: they document the API (OpenAPI); hot paths parse with orjson."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

from nnspec.runtime.repository import MAX_NAME_LENGTH, NAME_PATTERN, VERSION_PATTERN

# What `repository.check_name` and `check_version` accept, as JSON Schema patterns.
_PATH_PARAMETERS = {"name": {"pattern": f"^{NAME_PATTERN}$", "maxLength": MAX_NAME_LENGTH},
                    "version": {"pattern": f"^{VERSION_PATTERN}$"}}


def inline_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema with `$defs` references inlined (for `openapi_extra` bodies)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def json_body(model: type[BaseModel]) -> dict:
    """`openapi_extra` declaring a JSON request body that the handler parses itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline_schema(model)}}}}


def enforce_openapi(app: FastAPI) -> None:
    """Make the app's OpenAPI document say what the server enforces: the model name and version patterns
    (the handlers check them, so FastAPI does not know them), and no 422 (bad input is a 400)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "path" and parameter["name"] in _PATH_PARAMETERS:
                        parameter["schema"].update(_PATH_PARAMETERS[parameter["name"]])
                operation["responses"].pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema

    app.openapi = openapi


class ErrorResponse(BaseModel):
    error: str = Field(description="what is wrong, naming the field and the expected shape")


# --- KServe V1 --------------------------------------------------------------------------------

class PredictRequest(BaseModel):
    instances: list[Any] = Field(min_length=1, description="nested arrays of the input shape, objects "
                                 "of named features (tables) or {\"b64\": ...} images")


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(description='classifiers: {"label", "class_index", '
                                              '"probabilities"}; regressors: {"values": {target: v}}')


class ModelList(BaseModel):
    models: list[str]


class ModelInfo(BaseModel):
    name: str
    ready: bool
    versions: list[int]
    metadata: dict[str, Any]


# --- Open Inference Protocol (V2) -------------------------------------------------------------

class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = Field(None, description='table models: {"features": [...]}, the raw '
                                              "features that may be sent as one input each instead of `input`")


class InferInput(BaseModel):
    name: str = Field(description="`input`, or (table models) a raw feature's name")
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, description="[N, *input shape]; a raw "
                                                     "feature: [N] or [N, 1]")
    datatype: Literal["FP32", "FP64", "INT32", "INT64", "BYTES"] = Field(
        description="`input`: FP32; a raw feature: BYTES (categorical) or a number type")
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(None, description="flat or nested; omit with binary_data_size")


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description='{"binary_data": true} for binary')


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(None, description='{"binary_data_output": true}: all binary')
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class InferOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


class RepositoryEntry(BaseModel):
    name: str
    version: str
    state: str
    reason: str
