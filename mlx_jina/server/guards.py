"""Checks every request passes before any route runs: Host, Origin and message framing.

A page in the user's browser can reach a server on 127.0.0.1. Two doors stay shut here:
DNS rebinding (a hostile name that resolves to 127.0.0.1 sends its own `Host`), refused
unless the host is allowed; and cross-origin requests, refused when they carry an
`Origin` that CORS was not configured for. A request with both Content-Length and
Transfer-Encoding is refused too: proxies in front may frame it differently (smuggling).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .protocol import ApiError

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str) -> tuple[str, ...]:
    """Loopback names for a loopback bind; any host ("*") for a bind to other addresses."""
    return LOOPBACK_HOSTS if is_loopback(bind_host) else ("*",)


def host_name(header: str) -> str:
    """The name part of a Host header: `[::1]:8080` -> `::1`, `Localhost.:80` -> `localhost`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        header = header.split(":")[0]
    return header.rstrip(".")


class RequestGuard:
    """ASGI middleware: refuse a request whose Host, Origin or framing is not acceptable."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str],
        cors_origins: Iterable[str] = (),
        on_refused: Callable[[str, int], None] | None = None,
        shape_for: Callable[[Scope], Callable[[ApiError], Response] | None] | None = None,
    ):
        """`shape_for(scope)`: how a refusal of that request is answered (None: the app's
        OpenAI shape), so an Ollama or TEI client reads it in its own API's shape."""
        self.app = app
        self.shape_for = shape_for
        self.allowed_hosts = {host_name(h) for h in allowed_hosts}
        self.cors_origins = {o.rstrip("/") for o in cors_origins}
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self.check(scope)
        except ApiError as e:
            if self.on_refused is not None:
                self.on_refused(scope["path"], e.status)
            shape = self.shape_for(scope) if self.shape_for is not None else None
            await (shape(e) if shape is not None else e.response())(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> None:
        headers: dict[str, list[str]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        hosts = headers.get("host", [])
        if "*" not in self.allowed_hosts and (
            len(hosts) != 1 or host_name(hosts[0]) not in self.allowed_hosts
        ):
            shown = hosts[0] if hosts else "(none)"
            raise ApiError(
                400,
                f"Host {shown!r} is not allowed (this server accepts "
                f"{', '.join(sorted(self.allowed_hosts))}). Start it with --allowed-hosts to "
                "add the names clients use.",
                code="host_not_allowed",
            )
        origin = (headers.get("origin") or [None])[0]
        if origin is not None and "*" not in self.cors_origins and (
            origin.rstrip("/") not in self.cors_origins
        ):
            raise ApiError(
                403,
                f"Cross-origin requests from {origin!r} are not allowed. Start the server "
                "with --cors-origins to let a web page call it.",
                code="origin_not_allowed",
            )
        if "content-length" in headers and "transfer-encoding" in headers:
            raise ApiError(
                400,
                "The request has both Content-Length and Transfer-Encoding; send one.",
                code="bad_framing",
                headers={"Connection": "close"},
            )
