"""FastAPI dependencies: the app state, the API key check and model leases."""

from __future__ import annotations

import contextlib
import hmac
from dataclasses import dataclass
from typing import Annotated, AsyncIterator, Iterator

from fastapi import Depends, Request

from .errors import ApiError
from .metrics import Metrics
from .settings import Settings
from .store import ModelLease, ModelStore

MODEL_SCOPE_KEY = "nnspec.model"  # (name, version) for the metrics middleware


@dataclass
class ServingState:
    """What the routes need, built by the app's lifespan."""

    settings: Settings
    store: ModelStore
    metrics: Metrics
    api_key: str | None


async def get_state(request: Request) -> ServingState:
    """The app's serving state (async: FastAPI runs sync dependencies in its threadpool)."""
    return request.app.state.serving


State = Annotated[ServingState, Depends(get_state)]


async def require_api_key(request: Request, state: State) -> None:
    """With an API key configured, demand `Authorization: Bearer <key>`."""
    check_api_key(state, request)


def check_api_key(state: ServingState, request: Request) -> None:
    """Raise 401 unless the request carries the configured API key (if any)."""
    if state.api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), state.api_key.encode()):
        raise ApiError(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


@contextlib.contextmanager
def leased_model(request: Request, name: str, version: str | None = None) -> Iterator[tuple[ServingState, ModelLease]]:
    """API key check + model lease without FastAPI dependencies, for the inference hot path.

    Resolving dependencies costs FastAPI about as much as the rest of a small request.
    """
    state: ServingState = request.app.state.serving
    check_api_key(state, request)
    lease = state.store.acquire(name, version)
    request.scope[MODEL_SCOPE_KEY] = (name, str(lease.version))
    try:
        yield state, lease
    finally:
        lease.release()


async def latest_model(request: Request, name: str) -> AsyncIterator[ModelLease]:
    """API key check + a lease on the latest loaded version of model `name` for this request."""
    with leased_model(request, name) as (_, lease):
        yield lease


LatestModel = Annotated[ModelLease, Depends(latest_model)]
