"""The shared HTTP server (aiohttp behind certloop's Request/Response/Router): routing, limits,
keep-alive, timeouts, the connection cap, gzip, HEAD, handler failures. Hostile inputs against both
real daemons are in test_http_hostile.py."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections.abc import Iterator

import pytest

from certloop.httpserver import HttpServer, Request, Response, Router


async def _echo(req: Request) -> Response:
    body = await req.read()
    return Response.json({"path": req.path, "q": req.arg("q"), "len": len(body), "id": req.params.get("id")})


async def _boom(req: Request) -> Response:
    raise RuntimeError("bug")


_BIG = bytes(range(256)) * 8192  # 2 MB: more than a loopback socket takes in one send


async def _pieces(req: Request) -> Response:
    return Response(200, _BIG, "application/octet-stream", more=(b"", b"middle", _BIG[::-1]))


@pytest.fixture
def server() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    router = Router({("GET", "/echo"): _echo, ("POST", "/echo"): _echo, ("GET", "/boom"): _boom,
                     ("POST", "/items/{id}/renew"): _echo, ("GET", "/pieces"): _pieces})
    srv = HttpServer(router, max_body=1024, read_timeout=0.5, idle_timeout=0.5)
    loop.run_until_complete(srv.start("127.0.0.1", 0))
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    yield srv.port
    asyncio.run_coroutine_threadsafe(srv.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


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
