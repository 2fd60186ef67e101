"""Connection guards below the ASGI app, in uvicorn's httptools protocol: a deadline for
each request head, and a bound on open connections.

uvicorn closes a keep-alive connection that stays silent, but once a byte arrives it waits
for the rest of the head for ever, so a client sending one header line every few seconds
holds a connection (and a file descriptor) as long as it likes. Here a connection whose
request head is not complete ``head_timeout`` seconds after it opened (or after its last
response) is closed. A connection opened past ``max_connections`` is answered 503 and
closed at once, before its head is read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["guarded_protocol"]

log = logging.getLogger("keel.serve")

_BODY = (
    b'{"error":{"code":"overloaded","message":"the server has too many open connections; '
    b'retry shortly"}}'
)
_OVERLOADED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\nretry-after: 1\r\n"
    b"connection: close\r\n\r\n" + _BODY
)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-head deadline and a connection bound
    (class attributes, set by :func:`guarded_protocol`).

    The deadline costs a request no timer of its own: a connection notes when it began
    waiting for a head, and its one timer, when it fires, closes the connection if that
    wait is over ``head_timeout`` old, or sleeps again for what is left of it."""

    head_timeout: float = 5.0
    max_connections: int = 4096
    _head_timer: asyncio.TimerHandle | None = None
    _waiting_since: float | None = None  # when the connection began waiting for a head

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_OVERLOADED)
            transport.close()
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting_since = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._waiting_since = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        waiting = bool(self.pipeline)  # a queued request's head is already complete
        super().on_response_complete()
        if not waiting and not self.transport.is_closing():
            self._await_head()

    def _await_head(self) -> None:
        self._waiting_since = self.loop.time()
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._check_head)

    def _check_head(self) -> None:
        self._head_timer = None
        since = self._waiting_since
        if since is None or self.transport.is_closing():
            return  # not waiting for a head now; the next wait sets the timer again
        left = since + self.head_timeout - self.loop.time()
        if left > 0:
            self._head_timer = self.loop.call_later(left, self._check_head)
            return
        log.debug("serve: closing a connection whose request head took over %ss", self.head_timeout)
        self.transport.close()


def guarded_protocol(head_timeout: float, max_connections: int) -> type[GuardedProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these bounds."""
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {"head_timeout": float(head_timeout), "max_connections": int(max_connections)},
    )
