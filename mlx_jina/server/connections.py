"""Connection limits that uvicorn lacks: a header deadline, and caps that slow clients
can't fill.

uvicorn's h11 protocol waits forever for a request's headers (its keep-alive timer stops
at the first byte), so a client that sends one header byte a minute holds a socket for
good. This subclass closes a connection whose headers are not complete `read_timeout`
seconds after it opened (or after its previous response) with a 408; the body has the
same deadline, enforced by the app.

A deadline alone does not stop slowloris: a few hundred sockets that trickle bytes and
reconnect keep any cap full. So at a cap (`max_connections` in all,
`max_connections_per_client` from one non-loopback address) the connection that has waited
longest without delivering a whole request is closed to make room; a newcomer gets 503
only when every connection holds a whole request. Clients that send their request at once
are then never shut out by clients that don't. Every refusal is counted by cause.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from uvicorn.protocols.http.h11_impl import H11Protocol

from .guards import is_loopback
from .limits import Limits
from .protocol import error_body

# A refusal's cause, as the `cause` label of mlx_jina_refusals_total.
HEADER_TIMEOUT, EVICTED = "header_timeout", "evicted"
MAX_CONNECTIONS, PER_CLIENT = "max_connections", "max_connections_per_client"


def raw_response(status: int, reason: str, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 error response in the API's JSON shape, then close."""
    body = json.dumps(error_body(message, "invalid_request_error", code=code)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and connection caps; `guarded_protocol`
    fills in the class attributes."""

    limits: Limits = Limits()
    on_refused: Callable[[str], None] = staticmethod(lambda cause: None)
    _header_timer: asyncio.TimerHandle | None = None
    _closing = False  # refused or evicted: no longer counted
    # loop time since which it waits for a whole request; None while it holds one
    _waiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = self.loop.time()
        self._arm_header_timer()
        self._make_room()

    # -- the caps

    def _make_room(self) -> None:
        """Over a cap, close the connection that has waited longest for its request; that
        is this newcomer only when every other one holds a whole request."""
        open_ = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and not c._closing]
        # A Unix socket's peer has no address (client None): local, so like loopback it
        # gets only the total cap.
        host = self.client[0] if self.client else ""
        caps = [(open_, self.limits.max_connections, MAX_CONNECTIONS)]
        if host and not is_loopback(host):  # on loopback every local client shares the address
            mine = [c for c in open_ if c.client and c.client[0] == host]
            caps.insert(0, (mine, self.limits.max_connections_per_client, PER_CLIENT))
        for pool, cap, cause in caps:
            if len(pool) <= cap:
                continue
            waiting = [c for c in pool if c._waiting_since is not None]
            victim = min(waiting, key=lambda c: c._waiting_since, default=self)
            if victim is self:
                self._refuse(cap, cause)
                return
            victim._evict()
            open_.remove(victim)

    def _refuse(self, cap: int, cause: str) -> None:
        self._closing = True
        self._cancel_header_timer()
        self.on_refused(cause)
        flag = "--" + cause.replace("_", "-")
        whose = "from your address " if cause == PER_CLIENT else ""
        self.transport.write(
            raw_response(
                503,
                "Service Unavailable",
                f"The server has {cap} open connections {whose}already, each with a request "
                f"in progress ({flag}); retry later.",
                "too_many_connections",
            )
        )
        # Closing with the request unread would reset the connection before the client
        # reads the 503: end our side, drop what arrives, close a moment later.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(1.0, self.transport.close)

    def _evict(self) -> None:
        """Close this connection, which has no whole request yet, to make room."""
        self._closing = True
        self._cancel_header_timer()
        self.on_refused(EVICTED)
        if self.cycle is None or self.cycle.response_complete:  # no request started
            self.transport.write(
                raw_response(
                    408,
                    "Request Timeout",
                    "The server is at its connection limit and closed this connection, "
                    "which had not sent a whole request; send requests at once.",
                    "connection_evicted",
                )
            )
        self.transport.close()  # mid-body, the app sees the client leave (499)

    # -- the header deadline, and when a request is whole

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        super().data_received(data)
        self._note_progress()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._request_in_progress():  # a pipelined request, already read
            self._note_progress()
        else:  # the next request on this keep-alive connection gets its own deadline
            self._waiting_since = self.loop.time()
            self._arm_header_timer()

    def _note_progress(self) -> None:
        if self._request_in_progress():
            self._cancel_header_timer()
            if not self.cycle.more_body:  # the whole request is in
                self._waiting_since = None
            elif self._waiting_since is None:  # a pipelined one, still arriving
                self._waiting_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _request_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.read_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._request_in_progress() or self.transport.is_closing():
            return
        self._closing = True
        self.on_refused(HEADER_TIMEOUT)
        self.transport.write(
            raw_response(
                408,
                "Request Timeout",
                f"The request headers did not arrive within {self.limits.read_timeout:g} s "
                "(--read-timeout).",
                "request_timeout",
            )
        )
        self.transport.close()


def guarded_protocol(
    limits: Limits, on_refused: Callable[[str], None] | None = None
) -> type[H11Protocol]:
    """A GuardedH11Protocol class with these limits, for uvicorn's `http=` option;
    `on_refused(cause)` counts each refusal."""
    attributes = {"limits": limits}
    if on_refused is not None:
        attributes["on_refused"] = staticmethod(on_refused)
    return type("GuardedH11Protocol", (GuardedH11Protocol,), attributes)
