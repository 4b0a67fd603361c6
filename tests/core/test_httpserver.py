"""The shared HTTP server (aiohttp behind certloop's Request/Response/Router): routing, limits,
keep-alive, timeouts, the connection cap, gzip, HEAD, handler failures. Hostile inputs against both
real daemons are in test_http_hostile.py."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from certloop.httpserver import HttpServer, Request, Response, Router
from stack.process import wait_until

_READING = threading.Event()  # set as _echo starts reading the body


async def _echo(req: Request) -> Response:
    _READING.set()
    body = await req.read()
    return Response.json({"path": req.path, "q": req.arg("q"), "len": len(body), "id": req.params.get("id")})


async def _boom(req: Request) -> Response:
    raise RuntimeError("bug")


_BIG = bytes(range(256)) * 8192  # 2 MB: more than a loopback socket takes in one send


async def _pieces(req: Request) -> Response:
    return Response(200, _BIG, "application/octet-stream", more=(b"", b"middle", _BIG[::-1]))


_RELEASE = threading.Event()


_WAITING: list[Request] = []  # the requests inside _wait now


async def _wait(req: Request) -> Response:
    """Busy until the test sets _RELEASE (a request in progress, for the cap)."""
    _WAITING.append(req)
    try:
        await asyncio.to_thread(_RELEASE.wait, 10)
    finally:
        _WAITING.remove(req)
    return Response.text("released\n")


_ROUTES = {("GET", "/echo"): _echo, ("POST", "/echo"): _echo, ("GET", "/boom"): _boom,
           ("POST", "/items/{id}/renew"): _echo, ("GET", "/pieces"): _pieces, ("GET", "/wait"): _wait}


@contextmanager
def serving(**options: Any) -> Iterator[HttpServer]:
    """An HttpServer with ``options`` on its own loop in a thread."""
    loop = asyncio.new_event_loop()
    srv = HttpServer(Router(_ROUTES), **options)
    loop.run_until_complete(srv.start("127.0.0.1", 0))
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        _RELEASE.set()
        asyncio.run_coroutine_threadsafe(srv.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        _RELEASE.clear()


@pytest.fixture
def server() -> Iterator[int]:
    with serving(max_body=1024, read_timeout=0.5, idle_timeout=0.5) as srv:
        yield srv.port


def _read_all(s: socket.socket) -> bytes:
    """Everything until the server closes (a socket.timeout here means it kept the connection open)."""
    received = b""
    while chunk := s.recv(65536):
        received += chunk
    return received


def _conn(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=5)


def test_routes_query_and_path_params_over_one_keepalive_connection(server: int) -> None:
    """Several requests reuse one connection; query and path parameters reach the handler."""
    c = _conn(server)
    c.request("GET", "/echo?q=a%20b")
    r = c.getresponse()
    assert r.status == 200 and b'"q": "a b"' in r.read()
    c.request("POST", "/items/shop-prod/renew", body=b"xyz")
    r = c.getresponse()
    assert r.status == 200 and b'"id": "shop-prod"' in r.read()


def test_unknown_path_404_wrong_method_405_bug_500(server: int) -> None:
    """Routing errors are distinct, and a handler exception is a 500 while the server keeps serving."""
    c = _conn(server)
    for method, path, status in [("GET", "/nope", 404), ("DELETE", "/echo", 405), ("GET", "/boom", 500),
                                 ("GET", "/echo", 200)]:
        c.request(method, path)
        r = c.getresponse()
        r.read()
        assert r.status == status, (method, path)


def test_body_over_limit_is_413_and_chunked_bodies_are_read(server: int) -> None:
    """A body beyond max_body is refused with 413; chunked encoding is decoded."""
    c = _conn(server)
    c.request("POST", "/echo", body=b"x" * 2000)
    assert c.getresponse().status == 413
    c = _conn(server)
    c.request("POST", "/echo", body=iter([b"ab", b"cde"]), encode_chunked=True,
              headers={"Transfer-Encoding": "chunked"})
    r = c.getresponse()
    assert r.status == 200 and b'"len": 5' in r.read()


def test_garbage_request_line_gets_400(server: int) -> None:
    """A malformed request line is answered with 400 and the connection closed."""
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(b"HELLO\r\n\r\n")
        answer = _read_all(s)  # and then EOF
    assert answer.split(b" ", 2)[1] == b"400" and b"Invalid method" in answer


def test_a_client_that_stalls_mid_request_is_answered_408_and_disconnected(server: int) -> None:
    """A half-sent request head (slowloris) gets 408 after read_timeout and the connection closes,
    instead of holding it; so does a body that stops arriving."""
    for stalled in (b"GET /echo HTTP/1.1\r\nHost: x\r\n",  # headers never finished
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"):  # body never finished
        with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
            s.sendall(stalled)
            assert _read_all(s).startswith(b"HTTP/1.1 408 ")  # then EOF, well before the client's 5 s


def test_an_idle_keepalive_connection_is_closed(server: int) -> None:
    """After a response, a keep-alive connection that sends nothing more is closed after idle_timeout."""
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := s.recv(4096):  # a socket.timeout here (5 s) would mean the server kept it open
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")


def test_a_body_in_pieces_arrives_whole_with_its_length(server: int) -> None:
    """A large body handed over in pieces (how /metrics is served, uncopied) is one body on the wire:
    the right Content-Length, every byte in order, and the connection stays usable."""
    c = _conn(server)
    c.request("GET", "/pieces")
    r = c.getresponse()
    expected = _BIG + b"middle" + _BIG[::-1]
    assert r.status == 200 and int(r.getheader("Content-Length") or 0) == len(expected)
    assert r.read() == expected
    c.request("GET", "/echo?q=next")
    assert b'"q": "next"' in c.getresponse().read()


def test_head_has_the_get_length_and_no_body(server: int) -> None:
    """HEAD answers a GET route with the GET's Content-Length and no body; the connection stays usable."""
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(b"HEAD /pieces HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?q=after HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        answer = _read_all(s)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {2 * len(_BIG) + 6}".encode() in head
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b'"q": "after"}')  # no HEAD body in between


def test_gzip_when_accepted_and_only_then(server: int) -> None:
    """A large body is gzipped for a client that accepts it (level and pieces do not matter to it) and
    sent as it is otherwise; q=0 refuses gzip; small bodies are never compressed."""
    for accept, gzipped in (("gzip", True), ("deflate, gzip;q=0.5", True), ("*", True), ("gzip;q=0", False),
                            ("identity", False), (None, False)):
        c = _conn(server)
        c.request("GET", "/pieces", headers={"Accept-Encoding": accept} if accept else {"Accept-Encoding": ""})
        r = c.getresponse()
        body = r.read()
        assert r.getheader("Vary") == "Accept-Encoding"
        if gzipped:
            assert r.getheader("Content-Encoding") == "gzip" and len(body) < len(_BIG)
            assert zlib.decompress(body, 31) == _BIG + b"middle" + _BIG[::-1]
        else:
            assert r.getheader("Content-Encoding") is None and len(body) == 2 * len(_BIG) + 6
    c = _conn(server)
    c.request("GET", "/echo", headers={"Accept-Encoding": "gzip"})
    r = c.getresponse()
    assert r.getheader("Content-Encoding") is None and r.read().startswith(b"{")


def test_expect_100_continue_is_answered_when_the_body_is_wanted(server: int) -> None:
    """A client that waits for 100 Continue (curl does, for bodies over 1 KiB) gets it once the handler
    reads the body, not before."""
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        assert b'"len": 5' in s.recv(1000)


def test_a_bad_chunk_arriving_while_the_handler_reads_is_a_400(server: int) -> None:
    """A malformed chunk that arrives after the handler started reading the body ends the read with 400
    (aiohttp alone leaves the handler waiting for the rest of the body)."""
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        _READING.clear()
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n")
        assert _READING.wait(5), "the handler never started reading"
        s.sendall(b"0x5\r\nhello\r\n0\r\n\r\n")
        answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 400") and b"chunk size" in answer


def test_a_client_that_pipelines_and_never_reads_is_disconnected() -> None:
    """A client pipelining requests for a 4 MB body and reading nothing is aborted after write_timeout:
    it pins neither the connection nor the buffered answer."""
    with serving(write_timeout=1.0) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        request = b"GET /pieces HTTP/1.1\r\nHost: x\r\n\r\n"
        sent = 0
        try:
            for _ in range(200):
                s.send(request)
                sent += 1
        except BlockingIOError:
            pass
        connections = srv.connections
        assert connections is not None
        wait_until(lambda: connections.write_timeouts, 10, "the write timeout to abort the connection")
        assert connections.write_timeouts == 1
        assert connections.open_connections == 0
        s.close()


def test_idle_connections_make_room_and_busy_ones_do_not() -> None:
    """At the cap, a new connection closes the oldest idle one; when every open connection is inside a
    request, the new one gets 503 and nobody busy is touched."""
    with serving(max_connections=3) as srv:
        connections = srv.connections
        assert connections is not None
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(3)]
        wait_until(lambda: connections.open_connections == 3, 10, "the three idle connections admitted")
        c = _conn(srv.port)
        c.request("GET", "/echo")
        assert c.getresponse().status == 200
        assert idle[0].recv(10) == b""  # the oldest idle connection was closed to make room
        c.close()
        for s in idle:
            s.close()
        wait_until(lambda: connections.open_connections == 0, 10, "the closed connections forgotten")
        busy = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(3)]
        for s in busy:
            s.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: len(_WAITING) == 3, 10, "three requests in progress")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as extra:
            assert _read_all(extra).startswith(b"HTTP/1.1 503 ")
        _RELEASE.set()
        for s in busy:
            assert s.recv(1000).startswith(b"HTTP/1.1 200"), "a busy connection was evicted"
            s.close()
        assert srv.connections is not None and srv.connections.evicted == 1 and srv.connections.refused == 1


def test_a_verified_client_certificate_reaches_the_handler_on_uvloop(tmp_path: Path) -> None:
    """mTLS as the renewer serves it (auth.client_ca_file), on the loop the daemons run (uvloop): the
    handler sees the verified client certificate; a client without one does not get through the handshake."""
    import ssl

    import requests
    import uvloop

    from tests.support.pki import Pki

    pki = Pki()
    server_files = pki.leaf(["127.0.0.1"]).write(tmp_path, "server")
    client_files = pki.client("alertmanager").write(tmp_path, "client")
    root = pki.write_root(tmp_path / "root.pem")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(server_files["fullchain"], server_files["key"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(root))

    async def who(req: Request) -> Response:
        subject = dict(item[0] for item in req.peer_cert["subject"]) if req.peer_cert else {}
        return Response.text(subject.get("commonName", "nobody"))

    async def scenario() -> tuple[str, bool]:
        srv = HttpServer(Router({("GET", "/who"): who}), ssl_context=ctx)
        await srv.start("127.0.0.1", 0)
        url = f"https://127.0.0.1:{srv.port}/who"
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(None, lambda: requests.get(
                url, cert=(str(client_files["fullchain"]), str(client_files["key"])), verify=str(root), timeout=5))
            try:
                await loop.run_in_executor(None, lambda: requests.get(url, verify=str(root), timeout=5))
                refused = False
            except requests.exceptions.SSLError:
                refused = True
            except requests.exceptions.ConnectionError:  # TLS 1.3: the alert may arrive as a reset
                refused = True
            return answer.text, refused
        finally:
            await srv.close()

    name, refused = uvloop.run(scenario())
    assert name == "alertmanager" and refused
