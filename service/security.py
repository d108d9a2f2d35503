"""Middleware that runs only when configured: the Host allowlist (`--allowed-hosts`) and CORS (`--cors-origin`)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_response
from .settings import Settings


def _host_name(header: bytes) -> str:
    """The host of a Host header, lower case, without the port; IPv6 keeps its brackets."""
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.partition(":")[0]


class AllowedHostsMiddleware:
    """Answers 400 to a request whose Host header is not allowed: a DNS-rebinding page names its own host.

    `hosts` are names (`localhost`, `[::1]`) or `*.domain` (its subdomains, not the domain itself),
    as in Starlette's TrustedHostMiddleware, but answered with the API's JSON errors.
    """

    def __init__(self, app: ASGIApp, hosts: list[str]):
        self.app = app
        self.names = frozenset(h for h in hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))  # ".domain"

    def allowed(self, host: str) -> bool:
        """Whether a Host header's host (see _host_name) is allowed."""
        return host in self.names or (bool(self.suffixes) and host.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = next((value for key, value in scope["headers"] if key == b"host"), b"")
            if not self.allowed(_host_name(header)):
                return await error_response(400, "Host header not allowed")(scope, receive, send)
        await self.app(scope, receive, send)


def add_security_middleware(app: FastAPI, settings: Settings) -> None:
    """CORS for `settings.cors_origins`, then the Host allowlist outside it; nothing when neither is set."""
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type", "inference-header-content-length"],
                           expose_headers=["inference-header-content-length", "x-model-version"])
    if settings.allowed_hosts:
        app.add_middleware(AllowedHostsMiddleware, hosts=settings.allowed_hosts)
