"""The FastAPI app: `create_app(settings)`; models load in the lifespan, never at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import AsyncIterator

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

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


DOCS_ASSETS = "/static-offline-docs"


def add_offline_docs(app: FastAPI) -> None:
    """/docs and /redoc with Swagger UI and ReDoc served from the fastapi-offline package's files, not a CDN."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"), name="static-offline-docs")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - Swagger UI",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js", with_google_fonts=False,
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png")


class ServingApp(FastAPI):
    """FastAPI with the app's own middleware (`add_middleware`) in front of FastAPI's layers instead of
    inside them, and HTTP requests handed straight to it: a request that the fast path answers passes
    no FastAPI layer (its error, telemetry and body-limit layers and the per-request telemetry check
    cost a fifth of a small request). Every other request reaches FastAPI's stack as before; the fast
    path answers its own unexpected errors as FastAPI's would (a logged, short 500)."""

    def build_middleware_stack(self) -> ASGIApp:
        """FastAPI's stack around the router, inside the middleware added with `add_middleware`."""
        own, self.user_middleware = self.user_middleware, []
        try:
            app = super().build_middleware_stack()
        finally:
            self.user_middleware = own
        for cls, args, kwargs in reversed(own):
            app = cls(app, *args, **kwargs)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan and websockets: FastAPI's own way
            return await super().__call__(scope, receive, send)
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)


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

    app = ServingApp(title="nnspec serve", version=nnspec.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="KServe V1 and Open Inference Protocol (V2) endpoints over an nnspec "
                              "model repository (Triton layout), with dynamic batching.")
    add_offline_docs(app)
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
