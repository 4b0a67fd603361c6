"""The connections under :mod:`certloop.httpserver`: aiohttp's protocol, plus the limits it leaves to us.

aiohttp parses requests with llhttp in strict mode (its C parser; :func:`require_c_parser` refuses to run
on the pure-Python fallback, whose rules differ), which rejects nearly everything RFC 9112 says a server
must reject. What it does not do, and both daemons need facing the network, lives here, at the connection:

0. **The rest of RFC 9112.** :func:`refusal` vets each parsed request head before any handler sees it:
   an HTTP version other than 1.0/1.1 (505), a transfer coding other than chunked (501), an invalid Host.
1. **One answer per rejected request, never a traceback.** aiohttp answers every parse error with 400 and
   logs each with its traceback, so a client could flood the log at line rate. Here each is one debug line
   and the answer names the problem: 414 for a request line over ``max_request_line`` bytes, 431 for a
   header field over ``max_header_field`` or more than ``max_headers`` fields, 400 for the rest.
2. **Read timeout.** A request head must arrive whole within ``read_timeout`` of its first byte, else 408
   and the connection closes (a slowloris client holds nothing for long). aiohttp's own keep-alive timer
   (``idle_timeout``) bounds the wait for a first byte, on a new connection as between requests.
3. **Write timeout.** While the transport's buffer is above its high-water mark (the client is not taking
   what we send), a timer runs; if the client takes nothing for ``write_timeout`` the connection is
   aborted. A client that pipelines requests and never reads pins neither the connection nor a large
   ``/metrics`` body (aiohttp already stops reading after 32 queued pipelined requests).
4. **Connection cap.** Beyond ``max_connections`` open connections, the oldest connection that is not
   inside a request (idle keep-alive, or still sending its head) is closed to make room; only when every
   open connection is busy is the new one answered 503 and closed. So thousands of idle connections
   cannot lock out ``/-/healthy`` or ``/metrics``: they are the ones that go.

What must stay true: these hooks touch aiohttp's ``RequestHandler`` only through ``data_received``,
``_process_keepalive``, ``pause_writing``/``resume_writing``, ``connection_made``/``connection_lost``,
``handle_error`` and the attributes ``_request_in_progress``, ``_messages``, ``_waiter``,
``_current_request`` and the ``_ErrInfo`` it queues for a parse error; the tests in
tests/core/test_http_hostile.py fail when an aiohttp upgrade changes any of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import http_parser, web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from certloop.errors import CertloopError

__all__ = ["DEFAULT_MAX_CONNECTIONS", "ConnectionServer", "Limits", "Refused", "parse_error_text", "refusal",
           "require_c_parser"]

log = logging.getLogger("certloop.http")


DEFAULT_MAX_CONNECTIONS = 1024  # Prometheus keeps a connection per concurrent scrape; idle ones beyond are closed


@dataclass(frozen=True)
class Limits:
    """What one daemon's HTTP server allows a client. Sizes in bytes, times in seconds."""

    max_body: int = 1 << 20
    read_timeout: float = 30.0
    idle_timeout: float = 75.0
    write_timeout: float = 30.0
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_request_line: int = 8190
    max_header_field: int = 16384  # must differ from max_request_line: the limit hit tells 414 from 431
    max_headers: int = 100

    def __post_init__(self) -> None:
        if self.max_request_line == self.max_header_field:
            raise ValueError("max_request_line and max_header_field must differ")
        if self.max_connections < 1:
            raise ValueError("max_connections must be 1 or more")


def require_c_parser() -> None:
    """Refuse to serve on aiohttp's pure-Python parser (``AIOHTTP_NO_EXTENSIONS`` set, or no binary
    wheel): its acceptance rules differ from llhttp's strict mode, which is what the hostile-input tests pin."""
    if http_parser.HttpRequestParser is http_parser.HttpRequestParserPy:
        raise CertloopError("aiohttp's C HTTP parser (llhttp) is not available: unset AIOHTTP_NO_EXTENSIONS, "
                            "or install aiohttp's binary wheel for this platform")


class Refused(BadHttpMessage):
    """A request llhttp accepted that RFC 9112 rejects, with the status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_HOST = re.compile(r"(?:\[[0-9A-Za-z:._~!$&'()*+,;=-]+\]|[0-9A-Za-z._~!$&'()*+,;=%-]*)(?::[0-9]*)?")


def refusal(message: RawRequestMessage) -> Refused | None:
    """What RFC 9112 rejects that llhttp lets through: an HTTP version other than 1.0/1.1 (505), a transfer
    coding other than chunked (501; llhttp already checked that chunked comes last, and once), a Host
    that is not ``host[:port]`` (400; llhttp already requires one Host on HTTP/1.1)."""
    version = message.version
    if version.major != 1 or version.minor > 1:
        return Refused(505, f"HTTP/{version.major}.{version.minor} is not supported; use HTTP/1.1")
    headers = message.headers
    if "Transfer-Encoding" in headers:
        codings = [c.strip().lower() for v in headers.getall("Transfer-Encoding") for c in v.split(",")]
        unknown = [c for c in codings if c != "chunked"]
        if unknown:
            return Refused(501, f"transfer coding {unknown[0]!r} is not supported (only chunked)")
    host = headers.get("Host")
    if host is not None and _HOST.fullmatch(host) is None:
        return Refused(400, "invalid Host header")
    return None


def parse_error_text(message: str) -> str:
    """aiohttp's error text without the echo of the offending bytes (it quotes them under a caret)."""
    lines = [line.strip().rstrip(":") for line in message.split("\n")]
    kept = [line for line in lines if line and not line.startswith(("b'", 'b"', "^", "bytearray("))]
    return ": ".join(kept[:2]) or "malformed request"


def _shown(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return str(peer)


def _raw_answer(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message, "status": status}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


_REQUEST_TIMEOUT = _raw_answer(408, "Request Timeout", "request head not received in time")
_OVERLOADED = _raw_answer(503, "Service Unavailable", "too many connections, all busy; retry")


class _Connection(RequestHandler):
    """aiohttp's per-connection protocol with the read/write timers and the cap's bookkeeping."""

    __slots__ = ("_head_timer", "_limits", "_server", "_write_timer")

    def __init__(self, server: ConnectionServer, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._server = server
        self._limits = server.limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    # -- the cap -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._server.admit(self):
            transport.write(_OVERLOADED)  # type: ignore[attr-defined]
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._server.forget(self)
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = None
        super().connection_lost(exc)

    @property
    def evictable(self) -> bool:
        """Not inside a request: idle between requests, or still sending a request head."""
        return not self._request_in_progress and not self._messages and not self._force_close

    # -- read timeout ----------------------------------------------------------------------------------

    def _waiting_for_head(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and data and self._waiting_for_head():
            self._head_timer = self._loop.call_later(self._limits.read_timeout, self._head_expired)
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:
            self._vet(queued)
        if self._head_timer is not None and not self._waiting_for_head():
            self._head_timer.cancel()  # a whole head arrived (a request, or an error to answer)
            self._head_timer = None
        if self._messages and self._current_request is not None:
            self._fail_body_read()

    def _vet(self, start: int) -> None:
        """Turn each newly parsed request that RFC 9112 rejects but llhttp let through into an error."""
        messages = self._messages
        for i in range(start, len(messages)):
            message = messages[i][0]
            if isinstance(message, RawRequestMessage):
                refused = refusal(message)
                if refused is not None:
                    messages[i] = (_ErrInfo(status=refused.status, exc=refused, message=refused.message),
                                   EMPTY_PAYLOAD)

    def _fail_body_read(self) -> None:
        """A parse error in the body of the request being handled (a bad chunk): aiohttp queues it as the
        next message and leaves the handler waiting for the rest of the body; hand it the error instead."""
        error = self._messages[-1][0]
        request = self._current_request
        if isinstance(error, _ErrInfo) and request is not None and not request.content.is_eof():
            request.content.set_exception(error.exc)

    def _process_keepalive(self) -> None:
        if self._head_timer is not None:  # a head is arriving: the read timeout, not the idle one, applies
            self._keepalive_handle = None
            return
        super()._process_keepalive()

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport is not None and self._waiting_for_head():
            log.debug("closed a connection from %s: request head not complete after %ss", _shown(self.peername),
                      self._limits.read_timeout)
            self.transport.write(_REQUEST_TIMEOUT)
            self.force_close()

    # -- write timeout ---------------------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self._loop.call_later(self._limits.write_timeout, self._write_expired)

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().resume_writing()

    def _write_expired(self) -> None:
        self._write_timer = None
        if self.transport is not None:
            log.debug("aborted a connection from %s: it took no data for %ss", _shown(self.peername),
                      self._limits.write_timeout)
            self._server.write_timeouts += 1
            self.transport.abort()

    # -- parse errors ----------------------------------------------------------------------------------

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, BadHttpMessage):  # not a parse error: aiohttp's own handling
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, Refused):
            status, text = exc.status, exc.message
        elif isinstance(exc, LineTooLong):
            if exc.args[1] == self.max_line_size:
                status, text = 414, f"request line longer than {self.max_line_size} bytes"
            else:
                status, text = 431, f"a header field is longer than {self.max_field_size} bytes"
        elif "Too many headers" in exc.message:
            status, text = 431, f"more than {self.max_headers} header fields"
        else:
            text = parse_error_text(exc.message)
        self._server.rejected += 1
        log.debug("rejected a request from %s: %d %s", _shown(self.peername), status, text)
        resp = web.json_response({"error": text, "status": status}, status=status)
        resp.force_close()
        return resp


class ConnectionServer(web.Server):
    """aiohttp's low-level server making :class:`_Connection` protocols, with the connection cap."""

    def __init__(self, handler: Any, limits: Limits) -> None:
        super().__init__(
            handler, access_log=None, keepalive_timeout=limits.idle_timeout, max_line_size=limits.max_request_line,
            max_field_size=limits.max_header_field, max_headers=limits.max_headers,
            lingering_time=0,  # a body the handler left unread (a 401) is not drained: the connection closes
            auto_decompress=False,  # a compressed request body is refused (415), never inflated
        )
        self.limits = limits
        self._open: dict[_Connection, None] = {}  # insertion order: oldest first
        self.evicted = 0  # idle connections closed to make room
        self.refused = 0  # new connections answered 503 (every open one busy)
        self.rejected = 0  # requests answered 4xx by the parser
        self.write_timeouts = 0
        self._warned = 0.0

    def __call__(self) -> _Connection:
        return _Connection(self, loop=self._loop, **self._kwargs)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def admit(self, conn: _Connection) -> bool:
        """Count ``conn`` in; at the cap close the oldest evictable connection, or say no."""
        self._open[conn] = None
        if len(self._open) <= self.limits.max_connections:
            return True
        victim = next((c for c in self._open if c is not conn and c.evictable), None)
        if victim is not None:
            del self._open[victim]
            victim.force_close()
            self.evicted += 1
            self._warn("closed the oldest idle connection to admit a new one")
            return True
        del self._open[conn]
        self.refused += 1
        self._warn("answered 503 to a new connection (every open connection is busy)")
        return False

    def forget(self, conn: _Connection) -> None:
        self._open.pop(conn, None)

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned >= 60:  # at most once a minute: a flood must not flood the log
            self._warned = now
            log.warning("connection cap of %d reached: %s (raise --web.max-connections if this is normal load)",
                        self.limits.max_connections, what)
