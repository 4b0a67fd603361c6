"""A small asyncio HTTP/1.1 server shared by the exporter and the renewer.

Why our own: the exporter's ``/probe`` and the renewer's webhook intake are hot paths on a
2-core box, and neither needs a framework. This server does keep-alive, Content-Length and
chunked request bodies with a size limit (413), bounded header sizes (431), request read
timeouts, optional TLS with client certificates (mTLS), and turns a handler bug into a 500
without stopping the process.

    async def hello(req: Request) -> Response:
        return Response.text("hi")

    server = HttpServer(Router({("GET", "/"): hello}))
    await server.start("127.0.0.1", 0)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["Handler", "HttpServer", "Request", "Response", "Router"]

log = logging.getLogger(__name__)

_MAX_REQUEST_LINE = 8192
_MAX_HEADERS = 100
_MAX_HEADER_BYTES = 32 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    peer: str
    peer_cert: Mapping[str, Any] | None = None  # verified client certificate (mTLS), as ssl.getpeercert()
    params: Mapping[str, str] = field(default_factory=dict)  # path parameters from the router

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Response:
    """What a handler answers. ``more`` is written after ``body`` as it is: a large body in a few
    pieces (a 26 MB ``/metrics``) goes out without first being copied into one."""

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


class Router:
    """Routes (method, path) to handlers. Path segments written ``{name}`` match one segment."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler] | None = None) -> None:
        self._exact: dict[tuple[str, str], Handler] = {}
        self._patterns: list[tuple[str, list[str], Handler]] = []
        for (method, path), handler in (routes or {}).items():
            self.add(method, path, handler)

    def add(self, method: str, path: str, handler: Handler) -> None:
        if "{" in path:
            self._patterns.append((method, path.strip("/").split("/"), handler))
        else:
            self._exact[(method, path)] = handler

    def _match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        handler = self._exact.get((method, path))
        if handler is not None:
            return handler, {}, True
        path_known = any(p == path for (_, p) in self._exact)
        parts = path.strip("/").split("/")
        for m, pattern, h in self._patterns:
            if len(pattern) != len(parts):
                continue
            params: dict[str, str] = {}
            for want, got in zip(pattern, parts, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    params[want[1:-1]] = unquote(got)
                elif want != got:
                    break
            else:
                if m == method:
                    return h, params, True
                path_known = True
        return None, {}, path_known

    async def __call__(self, request: Request) -> Response:
        handler, params, path_known = self._match(request.method, request.path)
        if handler is None and request.method == "HEAD":
            handler, params, path_known = self._match("GET", request.path)
        if handler is None:
            if path_known:
                return Response.error(405, f"method {request.method} not allowed on {request.path}")
            return Response.error(404, f"no such path: {request.path}")
        if params:
            request = Request(
                request.method, request.path, request.query, request.headers, request.body,
                request.peer, request.peer_cert, params,
            )
        return await handler(request)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HttpServer:
    """Serve ``handler`` over HTTP/1.1 with keep-alive.

    ``max_body`` bounds request bodies (413 beyond it); ``read_timeout`` bounds how long a client
    may take to send one request; idle keep-alive connections close after ``idle_timeout``.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        max_body: int = 1 << 20,
        read_timeout: float = 30.0,
        idle_timeout: float = 75.0,
        ssl_context: ssl.SSLContext | None = None,
        server_header: str = "certloop",
    ) -> None:
        self.handler = handler
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.ssl_context = ssl_context
        self.server_header = server_header
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> None:
        self._server = await asyncio.start_server(
            self._serve, host, port, ssl=self.ssl_context, backlog=backlog, limit=_MAX_REQUEST_LINE * 2,
            reuse_address=True,
        )

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def sockets(self) -> list[Any]:
        return list(self._server.sockets) if self._server is not None else []

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        peer_cert = None
        if self.ssl_context is not None:
            sslobj = writer.get_extra_info("ssl_object")
            if sslobj is not None:
                peer_cert = sslobj.getpeercert() or None
        try:
            first = True
            while True:
                try:
                    # asyncio.timeout, not wait_for: wait_for wraps each read in an extra task
                    async with asyncio.timeout(self.read_timeout if first else self.idle_timeout):
                        line = await reader.readline()
                except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
                    return
                if not line:
                    return
                first = False
                try:
                    async with asyncio.timeout(self.read_timeout):
                        request, keep_alive = await self._read_request(line, reader, peer, peer_cert)
                except _BadRequest as exc:
                    await self._write(writer, Response.error(exc.status, exc.message), keep_alive=False)
                    return
                except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                    return
                try:
                    response = await self.handler(request)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("handler failed for %s %s", request.method, request.path)
                    response = Response.error(500, "internal error (see the server log)")
                if request.method == "HEAD":
                    response = Response(response.status, b"", response.content_type, response.headers)
                await self._write(writer, response, keep_alive=keep_alive)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _read_request(
        self, line: bytes, reader: asyncio.StreamReader, peer: str, peer_cert: Mapping[str, Any] | None
    ) -> tuple[Request, bool]:
        if not line.endswith(b"\n"):
            raise _BadRequest(414, "request line too long")
        try:
            method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
        except ValueError:
            raise _BadRequest(400, "malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise _BadRequest(505, "only HTTP/1.x is supported")
        headers: dict[str, str] = {}
        total = 0
        while True:
            h = await reader.readline()
            total += len(h)
            if total > _MAX_HEADER_BYTES or len(headers) > _MAX_HEADERS:
                raise _BadRequest(431, "request headers too large")
            if not h.endswith(b"\n"):
                raise _BadRequest(400, "truncated request headers")
            if h in (b"\r\n", b"\n"):
                break
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep:
                raise _BadRequest(400, "malformed header line")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        body = await self._read_body(reader, headers)
        conn = headers.get("connection", "").lower()
        keep_alive = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True) if parts.query else {}
        return Request(method, unquote(parts.path) or "/", query, headers, body, peer, peer_cert), keep_alive

    async def _read_body(self, reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            size = 0
            while True:
                size_line = await reader.readline()
                try:
                    n = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadRequest(400, "malformed chunked body") from None
                if n == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += n
                if size > self.max_body:
                    raise _BadRequest(413, f"request body larger than {self.max_body} bytes")
                chunks.append(await reader.readexactly(n))
                await reader.readexactly(2)
        length_text = headers.get("content-length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise _BadRequest(400, "malformed Content-Length") from None
        if length < 0:
            raise _BadRequest(400, "malformed Content-Length")
        if length > self.max_body:
            raise _BadRequest(413, f"request body larger than {self.max_body} bytes")
        return await reader.readexactly(length) if length else b""

    async def _write(self, writer: asyncio.StreamWriter, response: Response, *, keep_alive: bool) -> None:
        reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
        head = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Server: {self.server_header}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body) + sum(len(part) for part in response.more)}",
        ]
        if not keep_alive:
            head.append("Connection: close")
        head.extend(f"{k}: {v}" for k, v in response.headers)
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        for part in (response.body, *response.more):  # separately: joining would copy a large body once more
            if part:
                writer.write(part)
        await writer.drain()
