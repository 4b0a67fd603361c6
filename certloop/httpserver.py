"""The HTTP server both daemons serve on: aiohttp's, behind certloop's small Request/Response/Router.

Why aiohttp: the server faces the network on both daemons, and HTTP/1.1 parsing is protocol code a
well-kept library does better than we would (llhttp in strict mode, fuzzed by its maintainers). We use
its low-level server (no ``web.Application``: the routes are a table of their own here), and
:mod:`certloop.httpconnections` adds the connection limits aiohttp leaves to its users.

This module is the one seam: handlers see :class:`Request` and return :class:`Response`, and nothing
outside it imports aiohttp's server. At the seam:

- the body is read only when a handler asks (``await request.read()``), bounded by ``max_body`` (413, and
  before a byte is read when ``Content-Length`` says so) and by ``read_timeout`` (408), so a handler can
  refuse a request (401) without reading what the client sends;
- ``gzip`` when the client accepts it and the body is worth it (Prometheus always asks), compressed off the
  event loop when large; ``HEAD`` answers the GET's headers and ``Content-Length`` with no body;
- a handler's exception is a 500 with the traceback logged; the process keeps serving;
- every answer is reported to the optional ``observer(route, method, status, seconds)``: ``route`` is the
  :class:`Router`'s pattern that matched (``/api/v1/jobs/{id}``) or :data:`UNMATCHED`, so the daemons'
  request metrics have one label value per route whatever paths clients send (low cardinality by
  construction). ``seconds`` runs from the request head's arrival to the answer being built (a
  multi-piece body's write is included). The observer runs on every request, ``/probe`` included: it
  must cost microseconds (see the daemons' metrics modules).

    async def hello(req: Request) -> Response:
        return Response.text("hi")

    server = HttpServer(Router({("GET", "/"): hello}))
    await server.start("127.0.0.1", 0)
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

from certloop.errors import HttpError, ListenError
from certloop.httpconnections import (
    DEFAULT_MAX_CONNECTIONS,
    ConnectionServer,
    Limits,
    parse_error_text,
    require_c_parser,
)

__all__ = [
    "DEFAULT_MAX_CONNECTIONS", "UNMATCHED", "Handler", "HttpServer", "Limits", "Observer", "Request",
    "Response", "Router", "accepts_gzip", "tune_collector",
]

log = logging.getLogger(__name__)

GZIP_MIN = 1400  # bytes: below about one packet, compressing saves nothing on the wire
GZIP_OFF_LOOP = 256 * 1024  # bytes: larger bodies are compressed in a thread, the loop keeps serving
# Exposition text shrinks nearly as well at level 1 as at 6, for a fraction of the CPU (benchmarks/RESULTS.md,
# "HTTP server: compression, large bodies, the collector").
_GZIP_LEVEL = 1
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
UNMATCHED = "other"  # the route of a request no route matched (404, 405, refused before routing)


class Request:
    """One request as a handler sees it; the body stays unread until :meth:`read`."""

    __slots__ = (
        "_body", "_max_body", "_raw", "_read_timeout", "headers", "method", "params", "path", "peer_cert", "principal",
        "route",
    )

    def __init__(self, raw: web.BaseRequest, *, max_body: int, read_timeout: float,
                 peer_cert: Mapping[str, Any] | None = None) -> None:
        self._raw = raw
        self._max_body = max_body
        self._read_timeout = read_timeout
        self._body: bytes | None = None
        self.method: str = raw.method
        self.path: str = raw.path  # percent-decoded
        self.headers: CIMultiDictProxy[str] = raw.headers  # case-insensitive names
        self.params: Mapping[str, str] = {}  # path parameters, set by the router
        self.peer_cert = peer_cert  # the verified client certificate (mTLS), as ssl.getpeercert() gives it
        self.principal: object | None = None  # who the application authenticated (set by its own guard)
        self.route: str = UNMATCHED  # the route pattern that matched, set by the router (for metrics)

    @property
    def query(self) -> MultiMapping[str]:
        return self._raw.query

    @property
    def target(self) -> str:
        """The request target as received (path and query, still percent-encoded)."""
        return self._raw.raw_path

    @property
    def peer(self) -> str:
        return str(self._raw.remote)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        return self._raw.query.get(name, default)

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body, at most ``limit`` (default and ceiling: the server's ``max_body``) bytes.

        Raises :class:`HttpError`: 413 when larger (before reading when Content-Length says so), 415 for a
        compressed body, 408 when it does not arrive within ``read_timeout``, 400 when it is malformed."""
        if self._body is not None:
            return self._body
        raw = self._raw
        cap = self._max_body if limit is None else min(limit, self._max_body)
        coding = raw.headers.get("Content-Encoding")
        if coding and coding.strip().lower() != "identity":
            raise HttpError(415, f"Content-Encoding {coding!r} is not accepted; send the body uncompressed")
        declared = raw.content_length
        if declared is not None and declared > cap:
            raise HttpError(413, f"request body larger than {cap} bytes")
        if not raw.body_exists:
            self._body = b""
            return self._body
        if raw.headers.get("Expect", "").lower() == "100-continue":
            await raw.writer.write(_CONTINUE)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._read_timeout):
                while chunk := await raw.content.readany():
                    size += len(chunk)
                    if size > cap:
                        raise HttpError(413, f"request body larger than {cap} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise HttpError(408, f"request body not received within {self._read_timeout:g}s") from None
        except HttpProcessingError as exc:
            raise HttpError(400, f"malformed request body: {parse_error_text(exc.message)}") from None
        except RequestPayloadError as exc:
            raise HttpError(400, f"malformed request body: {parse_error_text(str(exc))}") from None
        self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def json(self, limit: int | None = None) -> Any:
        return json.loads(await self.read(limit))


@dataclass
class Response:
    """What a handler answers. ``more`` is written after ``body`` as it is: a large body in a few
    pieces (a large inventory's ``/metrics``) goes out without first being copied into one."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    more: tuple[bytes, ...] = ()

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode())

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(data, sort_keys=True, default=str).encode(), "application/json")

    @classmethod
    def error(cls, status: int, message: str) -> Response:
        return cls.json({"error": message, "status": status}, status)


Handler = Callable[[Request], Awaitable[Response]]
Observer = Callable[[str, str, int, float], None]
"""Called once per answered request with (route, method, status, seconds); must not raise or block."""


class Router:
    """Routes (method, path) to handlers. Path segments written ``{name}`` match one segment."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler] | None = None) -> None:
        self._exact: dict[tuple[str, str], Handler] = {}
        self._paths: set[str] = set()
        self._patterns: list[tuple[str, list[str], Handler, str]] = []
        for (method, path), handler in (routes or {}).items():
            self.add(method, path, handler)

    def add(self, method: str, path: str, handler: Handler) -> None:
        if "{" in path:
            self._patterns.append((method, path.strip("/").split("/"), handler, path))
        else:
            self._exact[(method, path)] = handler
            self._paths.add(path)

    def _match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool, str]:
        handler = self._exact.get((method, path))
        if handler is not None:
            return handler, {}, True, path
        path_known = path in self._paths
        parts = path.strip("/").split("/")
        for m, pattern, h, route in self._patterns:
            if len(pattern) != len(parts):
                continue
            params: dict[str, str] = {}
            for want, got in zip(pattern, parts, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                if m == method:
                    return h, params, True, route
                path_known = True
        return None, {}, path_known, UNMATCHED

    async def __call__(self, request: Request) -> Response:
        handler, params, path_known, route = self._match(request.method, request.path)
        if handler is None and request.method == "HEAD":
            handler, params, path_known, route = self._match("GET", request.path)
        if handler is None:
            if path_known:
                return Response.error(405, f"method {request.method} not allowed on {request.path}")
            return Response.error(404, f"no such path: {request.path}")
        if params:
            request.params = params
        request.route = route
        return await handler(request)


def tune_collector() -> None:
    """Raise the cyclic collector's young-generation threshold for a serving daemon (call once at start).

    Every request in flight (a ``/probe`` waiting on its handshake, a webhook on the store) holds aiohttp's
    per-request objects; at the default threshold of 700 net allocations they trip a young collection every
    few dozen requests and promote survivors toward full collections. A threshold ten times the default makes
    them rarer in proportion. What must stay true: the young generation holds only what the requests in
    flight allocate, so it stays small and each collection short. What it saved: benchmarks/RESULTS.md,
    "HTTP server: compression, large bodies, the collector" and "the HTTP layer on aiohttp"."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(7000, middle, old)


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` value admits gzip (``gzip`` or ``*`` with a q-value above 0)."""
    if not header:
        return False
    for item in header.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value) > 0
            except ValueError:
                return False
        return True
    return False


def _gzip(parts: tuple[bytes, ...]) -> bytes:
    squeezer = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    out = [squeezer.compress(part) for part in parts]
    out.append(squeezer.flush())
    return b"".join(out)


class HttpServer:
    """Serve ``handler`` over HTTP/1.1 with keep-alive, on aiohttp.

    ``max_body`` bounds request bodies (413); ``read_timeout`` bounds a request head from its first byte
    and a body read; idle keep-alive connections close after ``idle_timeout``; a client that takes no data
    for ``write_timeout`` is disconnected; ``max_connections`` caps open connections (see
    :mod:`certloop.httpconnections`). ``reuse_port`` sets ``SO_REUSEPORT`` so several processes can share
    the address (every one of them must set it). ``observer`` receives every answered request (see the
    module docstring).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        max_body: int = 1 << 20,
        read_timeout: float = 30.0,
        idle_timeout: float = 75.0,
        write_timeout: float = 30.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        ssl_context: ssl.SSLContext | None = None,
        server_header: str = "certloop",
        reuse_port: bool = False,
        observer: Observer | None = None,
    ) -> None:
        require_c_parser()
        self.handler = handler
        self.observer = observer
        self.limits = Limits(max_body=max_body, read_timeout=read_timeout, idle_timeout=idle_timeout,
                             write_timeout=write_timeout, max_connections=max_connections)
        self.ssl_context = ssl_context
        self.server_header = server_header
        self.reuse_port = reuse_port
        self.connections: ConnectionServer | None = None
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> None:
        """Listen on ``host:port``; :class:`~certloop.errors.ListenError` when the address cannot be bound."""
        self.connections = ConnectionServer(self._dispatch, self.limits)
        self._runner = web.ServerRunner(self.connections, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, ssl_context=self.ssl_context, backlog=backlog,
                                 reuse_address=True, reuse_port=self.reuse_port or None)
        try:
            await self._site.start()
        except BaseException as exc:
            await self._runner.cleanup()
            self._runner = self._site = None
            if isinstance(exc, OSError):  # in use, a privileged port, no such address: the daemon's exit code
                raise ListenError(host, port, exc.strerror or str(exc)) from exc
            raise

    @property
    def port(self) -> int:
        assert self._site is not None
        return self._site.port

    async def close(self) -> None:
        if self._runner is None:
            return
        await self._runner.cleanup()
        self._runner = self._site = None

    # -- one request ------------------------------------------------------------------------------

    async def _dispatch(self, raw: web.BaseRequest) -> web.StreamResponse:
        start = time.perf_counter()
        peer_cert = None
        if self.ssl_context is not None and raw.transport is not None:
            peer_cert = raw.transport.get_extra_info("peercert") or None
        request = Request(raw, max_body=self.limits.max_body, read_timeout=self.limits.read_timeout,
                          peer_cert=peer_cert)
        close = raw.method == "CONNECT"  # llhttp treats CONNECT as an upgrade: never keep that connection
        try:
            response = await self.handler(request)
        except HttpError as exc:
            response, close = Response.error(exc.status, exc.message), True
        except ConnectionError:  # the client went away mid-body: nobody to answer
            gone = web.Response(status=400)
            gone.force_close()
            if self.observer is not None:
                self.observer(request.route, request.method, 400, time.perf_counter() - start)
            return gone
        except Exception:
            log.exception("handler failed for %s %s", request.method, request.path)
            response = Response.error(500, "internal error (see the server log)")
        answer = await self._answer(raw, response, close)
        if self.observer is not None:
            self.observer(request.route, request.method, response.status, time.perf_counter() - start)
        return answer

    async def _answer(self, raw: web.BaseRequest, response: Response, close: bool) -> web.StreamResponse:
        if raw.body_exists and not raw.content.is_eof():
            close = True  # a body still on its way (a refused webhook): say so, aiohttp will not drain it
        headers: dict[str, str] | CIMultiDict[str] = {"Server": self.server_header,
                                                      "Content-Type": response.content_type}
        if response.headers:  # aiohttp copies these into its own CIMultiDict: build one only when needed
            headers = CIMultiDict(headers)
            for name, value in response.headers:
                headers.add(name, value)
        parts = (response.body, *response.more) if response.more else (response.body,)
        size = sum(map(len, parts)) if response.more else len(response.body)
        if size >= GZIP_MIN:
            headers["Vary"] = "Accept-Encoding"
            if raw.method != "HEAD" and accepts_gzip(raw.headers.get("Accept-Encoding")):
                body = await asyncio.to_thread(_gzip, parts) if size >= GZIP_OFF_LOOP else _gzip(parts)
                parts, size = (body,), len(body)
                headers["Content-Encoding"] = "gzip"
        if raw.method == "HEAD":
            answer = web.StreamResponse(status=response.status, headers=headers)
            answer.content_length = size
        elif len(parts) == 1:
            answer = web.Response(status=response.status, body=parts[0], headers=headers)
        else:
            answer = web.StreamResponse(status=response.status, headers=headers)
            answer.content_length = size
            if close:
                answer.force_close()
            try:
                await answer.prepare(raw)
                for part in parts:  # one write each: joining would copy a large body once more
                    if part:
                        await answer.write(part)
                await answer.write_eof()
            except ConnectionError:  # aborted (write timeout) or gone: aiohttp closes it quietly
                pass
            return answer
        if close:
            answer.force_close()
        return answer
