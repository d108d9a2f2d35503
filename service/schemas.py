"""Request and response models: they document the API (OpenAPI); hot paths parse with orjson."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


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


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: Literal["FP32"]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(None, description="flat or nested; omit with binary_data_size")


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description='{"binary_data": true} for binary')


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(None, description='{"binary_data_output": true}: all binary')
    inputs: list[InferInput]
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
