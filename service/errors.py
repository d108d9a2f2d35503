"""Errors as the protocols want them: `{"error": "..."}` with a 4xx/503 status (a bug: a short 500).

Both protocols answer bad input with 400 (Triton on V2; KServe V1 servers do too), a 503 says when to
retry (`Retry-After`), and no message shows a folder of the server (`hide_paths`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("nnspec.serve")


class ApiError(Exception):
    """An error answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


RETRY_AFTER_SECONDS = 1  # a 503 here is a full queue, a version being swapped or models still loading: short-lived


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON error response; a 503 carries `Retry-After`."""
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} | (headers or {})
    return Response(orjson.dumps({"error": message}), status_code=status,
                    media_type="application/json", headers=headers)


def unexpected_error(method: str, path: str, exc: BaseException) -> Response:
    """The short 500 for a bug, logged with its traceback on the server."""
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return error_response(500, "internal server error")


def hide_paths(message: str, repository: Path) -> str:
    """`message` with the repository's folder cut from its paths (`/srv/models/iris/2/x` -> `iris/2/x`)."""
    for root in (str(repository.resolve()), str(repository)):  # the absolute form first: it contains the other
        message = message.replace(root + os.sep, "")
    return message


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "request"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with `{"error": ...}`; unexpected ones with a short 500."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        return unexpected_error(request.method, request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return error_response(400, f"{_location(first['loc'])}: {first['msg']}")
