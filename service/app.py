"""The FastAPI app: `create_app(settings)`; models load in the lifespan, never at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import AsyncIterator

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

import nnspec

from . import routes_ops, routes_ui, routes_v1, routes_v2
from .deps import ServingState
from .errors import install_error_handlers
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, MetricsMiddleware
from .routing import FastPathMiddleware
from .schemas import enforce_openapi
from .security import add_security_middleware
from .settings import Settings
from .store import ModelStore

log = logging.getLogger("nnspec.serve")

# Every route, in matching order. Health, /metrics, the docs and the pages' files are open; a ModelRouter
# guards each of its routes with the API key, an AdminRouter (repository control) with the admin key.
# The model pages (routes_ui, off with --no-ui) come first: their `/` comes before operations' redirect to /docs.
ROUTERS = (*routes_ui.ROUTERS, routes_v1.router, routes_v2.health, routes_v2.router, routes_v2.admin, routes_ops.router)


def routers(settings: Settings) -> list:
    """ROUTERS less the model pages when `settings.ui` is off."""
    return [router for router in ROUTERS if settings.ui or router not in routes_ui.ROUTERS]


def _key_from_env(variable: str | None, what: str) -> str | None:
    if not variable:
        return None
    key = os.environ.get(variable, "").strip()
    if not key:
        raise RuntimeError(f"environment variable {variable} ({what}) is not set")
    return key


def api_key(settings: Settings) -> str | None:
    """The API key from the environment variable the settings name (None: no key), or a RuntimeError."""
    return _key_from_env(settings.api_key_env, "the API key")


def admin_key(settings: Settings) -> str | None:
    """The admin key from the environment variable the settings name (None: no key), or a RuntimeError."""
    return _key_from_env(settings.admin_key_env, "the admin key")


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
    keys = api_key(settings), admin_key(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = ModelStore(settings, metrics)
        app.state.serving = ServingState(settings, store, metrics, *keys)
        await run_in_threadpool(store.load_all)
        poll = settings.poll_interval
        poller = asyncio.create_task(_poll(store, poll)) if poll else None
        try:
            yield
        finally:
            if poller:
                poller.cancel()
            await run_in_threadpool(store.close)
            metrics.close()

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the fastapi-offline package, not a CDN.
    app = FastAPIOffline(title="nnspec serve", version=nnspec.__version__, lifespan=lifespan,
                         description="KServe V1 and Open Inference Protocol (V2) endpoints over an nnspec "
                                     "model repository (Triton layout), with dynamic batching.")
    install_error_handlers(app)
    enforce_openapi(app)
    for router in routers(settings):
        app.include_router(router)
    # Middleware, innermost first: the fast path, the body limit, CORS and the Host allowlist when
    # configured (security), then metrics around everything.
    fast_routes = routes_v1.router.fast_routes + routes_v2.router.fast_routes
    app.add_middleware(FastPathMiddleware, routes=fast_routes if fast_path else [])
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes,
                       body_timeout=settings.body_timeout)
    add_security_middleware(app, settings)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (several workers): settings from `NNSPEC_*` variables."""
    return create_app(Settings())
