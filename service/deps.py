"""FastAPI dependencies: the app state, the API key guard and model leases."""

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


def serving_state(request: Request) -> ServingState:
    """The app's serving state (set by the lifespan)."""
    return request.app.state.serving


async def get_state(request: Request) -> ServingState:
    """The app's serving state, as a dependency (async: FastAPI runs sync dependencies in its threadpool)."""
    return serving_state(request)


State = Annotated[ServingState, Depends(get_state)]


async def require_api_key(request: Request) -> None:
    """The guard of every model route: with an API key configured, demand `Authorization: Bearer <key>`.

    `ModelRouter` adds it to each of its routes, and the fast path calls it before each handler.
    """
    key = serving_state(request).api_key
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


@contextlib.contextmanager
def leased_model(request: Request, name: str, version: str | None = None) -> Iterator[tuple[ServingState, ModelLease]]:
    """A lease on the latest (or the given) version of model `name` for this request, with the state."""
    state = serving_state(request)
    lease = state.store.acquire(name, version)
    request.scope[MODEL_SCOPE_KEY] = (name, str(lease.version))
    try:
        yield state, lease
    finally:
        lease.release()


async def latest_model(request: Request, name: str) -> AsyncIterator[ModelLease]:
    """A lease on the latest loaded version of model `name`, as a dependency."""
    with leased_model(request, name) as (_, lease):
        yield lease


LatestModel = Annotated[ModelLease, Depends(latest_model)]
