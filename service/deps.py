"""FastAPI dependencies: the app state, the two guards (API key, admin key), body types and model leases."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, AsyncIterator

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from .errors import ApiError
from .metrics import Metrics
from .settings import Settings
from .store import ModelLease, ModelStore

MODEL_SCOPE_KEY = "nnspec.model"  # (name, version) for the metrics middleware
JSON, BINARY, MULTIPART = "application/json", "application/octet-stream", "multipart/form-data"


@dataclass
class ServingState:
    """What the routes need, built by the app's lifespan."""

    settings: Settings
    store: ModelStore
    metrics: Metrics
    api_key: str | None
    admin_key: str | None


def serving_state(request: Request) -> ServingState:
    """The app's serving state (set by the lifespan)."""
    return request.app.state.serving


async def get_state(request: Request) -> ServingState:
    """The app's serving state, as a dependency (async: FastAPI runs sync dependencies in its threadpool)."""
    return serving_state(request)


State = Annotated[ServingState, Depends(get_state)]


def _demand_bearer(request: Request, key: str, what: str) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(401, f"missing or wrong {what}", {"WWW-Authenticate": "Bearer"})


async def require_api_key(request: Request) -> None:
    """The guard of every model route: with an API key configured, demand `Authorization: Bearer <key>`.

    `ModelRouter` adds it to each of its routes, and the fast path calls it before each handler.
    """
    key = serving_state(request).api_key
    if key is not None:
        _demand_bearer(request, key, "API key")


async def require_admin_key(request: Request) -> None:
    """The guard of repository control: 403 unless `--model-control explicit`, then demand the admin key.

    `AdminRouter` adds it to each of its routes. The API key does not pass it.
    """
    state = serving_state(request)
    if state.settings.model_control != "explicit":
        raise ApiError(403, f"repository control is off (--model-control {state.settings.model_control})")
    _demand_bearer(request, state.admin_key, "admin key")  # Settings refuse explicit control without a key


class BodyTypes:
    """The Content-Types a POST route takes, as a dependency: any other is 415; none given means the route's own.

    A web page can POST text/plain, form-urlencoded or multipart across origins without a CORS
    preflight; refusing those types shuts that door (tritonclient.http sends no Content-Type, its
    asyncio client application/octet-stream). One header lookup: the fast path calls it too.
    """

    def __init__(self, *media_types: str):
        self._accepted = frozenset(media_type.encode() for media_type in media_types)
        self._refusal = "Content-Type must be " + " or ".join(media_types)

    async def __call__(self, request: Request) -> None:
        for key, value in request.scope["headers"]:
            if key == b"content-type":
                if value not in self._accepted and value.partition(b";")[0].strip().lower() not in self._accepted:
                    raise ApiError(415, self._refusal)
                return


def accepts(*media_types: str) -> DependsParam:
    """Declare the request Content-Types of a POST route: `dependencies=[accepts(JSON, BINARY)]`."""
    return Depends(BodyTypes(*media_types))


def leased_model(request: Request, name: str, version: str | None = None) -> ModelLease:
    """A lease on the latest (or the given) version of model `name` for this request: use it in a
    `with` block, which releases it (a plain context manager: cheaper than a generator one)."""
    lease = serving_state(request).store.acquire(name, version)
    request.scope[MODEL_SCOPE_KEY] = (name, str(lease.version))
    return lease


async def latest_model(request: Request, name: str) -> AsyncIterator[ModelLease]:
    """A lease on the latest loaded version of model `name`, as a dependency."""
    with leased_model(request, name) as lease:
        yield lease


LatestModel = Annotated[ModelLease, Depends(latest_model)]
