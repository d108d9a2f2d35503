"""The FastAPI app: `create_app(settings)`; models load in the lifespan, never at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import AsyncIterator

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

import nnspec

from . import routes_ops, routes_v1, routes_v2
from .deps import ServingState
from .errors import install_error_handlers
from .metrics import Metrics
from .middleware import ServingMiddleware
from .settings import Settings
from .store import ModelStore

log = logging.getLogger("nnspec.serve")


def api_key(settings: Settings) -> str | None:
    """The API key from the environment variable the settings name (None: no key), or a RuntimeError."""
    if not settings.api_key_env:
        return None
    key = os.environ.get(settings.api_key_env, "").strip()
    if not key:
        raise RuntimeError(f"environment variable {settings.api_key_env} (the API key) is not set")
    return key


async def _poll(store: ModelStore, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await run_in_threadpool(store.sync)
        except Exception:  # a broken repository must not end polling
            log.exception("repository poll failed")


def create_app(settings: Settings | None = None, fast_path: bool = True) -> FastAPI:
    """The nnspec serving app over `settings.repository`.

    `fast_path=False` serves the inference routes through FastAPI's routing too (same handlers;
    the tests compare both).
    """
    settings = settings or Settings()
    metrics = Metrics()
    key = api_key(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = ModelStore(settings, metrics)
        app.state.serving = ServingState(settings, store, metrics, key)
        await run_in_threadpool(store.load_all)
        poller = asyncio.create_task(_poll(store, settings.poll_seconds)) if settings.poll_seconds else None
        try:
            yield
        finally:
            if poller:
                poller.cancel()
            await run_in_threadpool(store.close)

    app = FastAPI(title="nnspec serve", version=nnspec.__version__, lifespan=lifespan,
                  description="KServe V1 and Open Inference Protocol (V2) endpoints over an nnspec "
                              "model repository (Triton layout), with dynamic batching.")
    install_error_handlers(app)
    app.include_router(routes_v1.router)
    app.include_router(routes_v2.health)
    app.include_router(routes_v2.router)
    app.include_router(routes_v2.infer_router)
    app.include_router(routes_ops.router)
    endpoints = routes_v1.FAST_ENDPOINTS + routes_v2.FAST_ENDPOINTS
    # From the routers themselves: FastAPI may keep included routers as lazy wrappers in app.routes.
    fast = [route for route in routes_v1.router.routes + routes_v2.infer_router.routes
            if isinstance(route, APIRoute) and route.endpoint in endpoints]
    if len(fast) != len(endpoints):
        raise RuntimeError("an inference route of the fast path is not registered")
    app.add_middleware(ServingMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics,
                       fast_routes=fast if fast_path else [])
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (several workers): settings from `NNSPEC_*` variables."""
    return create_app(Settings())
