"""Request bodies in and JSON out: orjson, with big bodies parsed off the event loop; compressed
bodies; the per-request row limits."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Callable, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .errors import ApiError

if TYPE_CHECKING:
    from nnspec.runtime.session import ModelSession

T = TypeVar("T")

BODY_SCOPE_KEY = "nnspec.body"  # the whole request body, set by BodyLimitMiddleware
OFFLOAD_BYTES = 256 * 1024  # parse big bodies in a worker thread, keeping the event loop free
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def request_body(request: Request) -> bytes:
    """The request's body, as `BodyLimitMiddleware` read it (else read now: an app without it)."""
    body = request.scope.get(BODY_SCOPE_KEY)
    return await request.body() if body is None else body


async def parse_body(parse: Callable[..., T], body: bytes, *args) -> T:
    """parse(body, *args): inline for small bodies, in a worker thread for big ones."""
    return await run_in_threadpool(parse, body, *args) if len(body) > OFFLOAD_BYTES else parse(body, *args)


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


def check_rows(rows: int, session: ModelSession, max_instances: int, what: str) -> None:
    """413 over the server's `max_instances`; 400 over the version's `max_batch_size`, as Triton answers."""
    if rows > max_instances:
        raise ApiError(413, f"too many {what}: {rows} > {max_instances}")
    if rows > session.max_batch_size:
        raise ApiError(400, f"batch of {rows} {what} exceeds max_batch_size {session.max_batch_size} "
                            f"of model {session.name!r}")


def _zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip or deflate body, decompressed: 413 past `limit` bytes of output (a bomb stops there),
    400 if it is not valid, 415 for another encoding."""
    encoding = encoding.strip().lower()
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise ApiError(415, f"Content-Encoding {encoding!r} is not supported; use gzip or deflate")
    if encoding == "deflate" and not _zlib_header(body):
        wbits = -zlib.MAX_WBITS  # raw deflate without the zlib wrapper, as some clients send it
    parts, size, data = [], 0, body
    while data:  # a gzip body may hold several members
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(data, limit - size + 1)  # at most one byte past the limit
        except zlib.error:
            raise ApiError(400, f"request body is not valid {encoding} data") from None
        size += len(part)
        if size > limit:
            raise ApiError(413, f"request body larger than {limit} bytes once decompressed")
        if not inflater.eof:
            raise ApiError(400, f"request body: truncated {encoding} data")
        parts.append(part)
        data = inflater.unused_data
    return b"".join(parts)
