"""Connection limits that uvicorn lacks: a deadline for request headers, a cap on open sockets.

uvicorn's h11 protocol waits forever for a request's headers (its keep-alive timer stops
at the first byte), so a client that sends one header byte a minute holds a socket for
good, and a few hundred of them exhaust the file descriptors. This subclass closes a
connection whose headers are not complete `read_timeout` seconds after it opened (or
after its previous response) with a 408, and answers connections beyond
`max_connections` with a 503 at once. The body has the same deadline, enforced by the app.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.h11_impl import H11Protocol

from .protocol import error_body


def raw_response(status: int, reason: str, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 error response in the API's JSON shape, then close."""
    body = json.dumps(error_body(message, "invalid_request_error", code=code)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap; the two limits
    are class attributes that `guarded_protocol` fills in."""

    read_timeout: float = 30.0
    max_connections: int = 1024
    _header_timer: asyncio.TimerHandle | None = None
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refuse()
            return
        self._arm_header_timer()

    def _refuse(self) -> None:
        self._refused = True
        self.transport.write(
            raw_response(
                503,
                "Service Unavailable",
                f"The server has {self.max_connections} open connections already "
                "(--max-connections); retry later.",
                "too_many_connections",
            )
        )
        # Closing with the request unread would reset the connection before the client
        # reads the 503: end our side, drop what arrives, close a moment later.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(1.0, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._request_in_progress():
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request on this keep-alive connection gets its own deadline.
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _request_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.read_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._request_in_progress() or self.transport.is_closing():
            return
        self.transport.write(
            raw_response(
                408,
                "Request Timeout",
                f"The request headers did not arrive within {self.read_timeout:g} s "
                "(--read-timeout).",
                "request_timeout",
            )
        )
        self.transport.close()


def guarded_protocol(read_timeout: float, max_connections: int) -> type[H11Protocol]:
    """A GuardedH11Protocol class with these limits, for uvicorn's `http=` option."""
    limits = {"read_timeout": read_timeout, "max_connections": max_connections}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), limits)
