"""Request bodies in and JSON out: orjson, with big bodies parsed off the event loop."""

from __future__ import annotations

from typing import Callable, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .errors import ApiError

T = TypeVar("T")

_OFFLOAD_BYTES = 256 * 1024  # parse big bodies in a worker thread, keeping the event loop free


async def parse_body(parse: Callable[..., T], body: bytes, *args) -> T:
    """parse(body, *args): inline for small bodies, in a worker thread for big ones."""
    return await run_in_threadpool(parse, body, *args) if len(body) > _OFFLOAD_BYTES else parse(body, *args)


def json_object(body: bytes, what: str = "request body") -> dict:
    """body parsed as a JSON object, or an ApiError saying which part of the request was wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, f"{what} is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, f"{what} must be a JSON object")
    return payload


def json_response(content: object, headers: dict[str, str] | None = None) -> Response:
    """orjson-encoded JSON (numpy arrays and scalars allowed)."""
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json", headers=headers)
