"""Reading the presented chain off a connected socket: the observe path and the full OpenSSL handshake.

    seen = await observe_chain(sock, SocketWatch(loop, sock), sni, budget)  # Unsupported: use OpenSSL
    seen = await openssl_handshake(loop, sock, sni, observation_context(), budget)
    seen.chain_der, seen.tls_version, seen.cipher

:func:`observe_chain` sends the ClientHello of :func:`observation_offer` and feeds the server's flight to a
`certloop.tlsobserve` :class:`~certloop.tlsobserve.Observer` until the Certificate message.
:func:`openssl_handshake` completes a client handshake with the one shared :func:`observation_context`,
pumped through memory BIOs (no transport, no protocol object, no per-connection buffer). Both count the
bytes received against ``budget`` (``ProbeError(chain_too_large)`` past it) and close by sending
close_notify and draining what already arrived, never waiting. A server that presents its chain and
then ends the handshake (one that requires a client certificate) has still presented it: both
paths return that chain. :func:`certloop.tls.fetch` chooses
between them and translates every other failure.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from contextlib import suppress
from functools import cache

from certloop.errors import FailureReason, ProbeError, Unsupported
from certloop.tlsobserve import Observed, Observer, Offer, offer_for, server_hello_version

__all__ = ["SocketWatch", "observation_context", "observation_offer", "observe_chain", "openssl_handshake"]

_RECV_SIZE = 32 * 1024
"""Bytes asked of the kernel per read: two full TLS records."""

_FLIGHT_KEPT = 1024
"""Bytes of the server's first flight kept for :func:`server_hello_version` (a ServerHello is
under 200 bytes, after at most a few warning alerts)."""

_SERVER_ALERT = re.compile(r"(SSLV3|TLSV1|TLSV13)_ALERT_")


def _ended_by_server(exc: Exception) -> bool:
    """Did the server end the handshake (an alert, a close, a reset) rather than OpenSSL refuse
    what it received? Only then is a chain already received what the server presents."""
    if isinstance(exc, ProbeError):
        return exc.reason is FailureReason.HANDSHAKE  # our pump saw the connection close
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError)):
        return True
    return isinstance(exc, ssl.SSLError) and _SERVER_ALERT.match(getattr(exc, "reason", None) or "") is not None


@cache
def observation_context() -> ssl.SSLContext:
    """The one client context every probe shares (building contexts per probe costs CPU).

    It observes, it does not judge: no verification and no hostname check (`certloop.verify` does
    that offline), TLS 1.0 to 1.3 with every cipher at OpenSSL security level 0, so that a legacy
    server still shows its certificate instead of failing the handshake: an old appliance with
    an expiring certificate is exactly what must not be missed. Anonymous suites are offered last
    so that a server with no certificate is reported as ``no_certificate``, not a handshake error.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:+aNULL:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    # Servers without RFC 5746 secure renegotiation are refused by OpenSSL 3 unless this is set
    # (named ssl.OP_LEGACY_SERVER_CONNECT only from Python 3.12).
    ctx.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
    # Sessions are never resumed (a resumed handshake shows no certificate): tickets are waste.
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


_VERSIONS = {
    "TLSv1.3": "TLS 1.3",
    "TLSv1.2": "TLS 1.2",
    "TLSv1.1": "TLS 1.1",
    "TLSv1": "TLS 1.0",
    "SSLv3": "SSL 3.0",
}


def _unverified_chain(sslobj: ssl.SSLObject) -> tuple[bytes, ...]:
    public = getattr(sslobj, "get_unverified_chain", None)
    if public is not None:  # Python >= 3.13: a list of DER bytes
        return tuple(public() or ())
    # Python 3.10-3.12: the private _ssl object returns _ssl.Certificate objects.
    certs = sslobj._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
    if not certs:
        return ()
    der = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]
    return tuple(c.public_bytes(der) for c in certs)


@cache
def observation_offer() -> Offer:
    """The fast path's ClientHello contents, mirroring :func:`observation_context`: the same
    cipher suites in the same order (names as OpenSSL reports them), groups, signature
    algorithms and versions, so a server negotiates the same version and cipher on both paths."""
    return offer_for(observation_context())


class SocketWatch:
    """One socket's readiness on the loop, registered once for the life of an observation.

    ``loop.sock_connect``/``sock_recv`` register and unregister the socket around every wait,
    which under uvloop creates and closes a poll handle each time (a handful of ``epoll_ctl`` and
    ``ioctl`` calls per wait, several waits per probe). Here the writer waits for the connect, the
    reader is added before the writer is removed (the loop keeps one handle), and both go in
    :meth:`close`, which must run before the socket is closed or handed to ``loop.sock_*``.
    """

    __slots__ = ("_fd", "_loop", "_reading", "_waiter", "_writing")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._fd = sock.fileno()
        self._waiter: asyncio.Future[None] | None = None
        self._reading = self._writing = False

    def _ready(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def writable(self) -> None:
        if self._reading:
            raise RuntimeError("a SocketWatch waits for writable only before it reads")
        if not self._writing:
            self._loop.add_writer(self._fd, self._ready)
            self._writing = True
        await self._wait()

    async def readable(self) -> None:
        if not self._reading:
            self._loop.add_reader(self._fd, self._ready)  # first: the loop keeps its handle
            self._reading = True
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        await self._wait()

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        """Unregister (idempotent); the socket itself is the caller's."""
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False


async def observe_chain(sock: socket.socket, watch: SocketWatch, sni: str | None, budget: int) -> Observed:
    """The fast path (`certloop.tlsobserve`): ClientHello out, server flight in until the
    Certificate message, close. Raises ``Unsupported`` for a fallback, ``Refused`` (final).

    The socket is connected and non-blocking and ``watch`` is its :class:`SocketWatch`; the watch
    is closed however this ends, the socket when it returns. The first read waits for the server instead of
    trying first: its answer cannot be there yet."""
    observer = Observer(observation_offer(), sni)
    try:
        hello = memoryview(observer.client_hello)
        while hello:
            try:
                hello = hello[sock.send(hello):]
            except BlockingIOError:
                await watch.writable()
        await watch.readable()
        while True:
            try:
                chunk = sock.recv(_RECV_SIZE)
            except BlockingIOError:
                await watch.readable()
                continue
            if not chunk:
                raise Unsupported("connection closed during handshake")
            budget -= len(chunk)
            if budget < 0:
                raise ProbeError(
                    FailureReason.CHAIN_TOO_LARGE, "server sent more handshake data than the chain bound allows"
                )
            seen = observer.feed(chunk)
            if seen is not None:
                break
    except OSError as exc:  # a reset may be the server's answer to this hello: let OpenSSL try
        raise Unsupported(f"{type(exc).__name__} during the handshake") from exc
    finally:
        watch.close()
    _drop(sock, observer.close_alert())
    return seen


async def openssl_handshake(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, sni: str | None, context: ssl.SSLContext, budget: int
) -> Observed:
    """A full OpenSSL client handshake through memory BIOs, then a polite close."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    flight = bytearray()
    try:
        await _handshake(loop, sock, tls, incoming, outgoing, budget, flight)
    except (ssl.SSLError, ConnectionError, ProbeError) as exc:
        chain = _unverified_chain(tls) if _ended_by_server(exc) else ()
        if not chain:
            raise
        # The server presented its chain and then refused to go on: it requires a client
        # certificate (TLS 1.2 and older end here; TLS 1.3 refuses only after our Finished). What
        # it presented is what we observe, as the observe path does.
        cipher = tls.cipher()
        sock.close()
        return Observed(chain, server_hello_version(bytes(flight)), cipher[0] if cipher else "")
    chain = _unverified_chain(tls)
    version = tls.version() or ""
    cipher = tls.cipher()
    _close(sock, tls, outgoing)
    return Observed(chain, _VERSIONS.get(version, version), cipher[0] if cipher else "")


async def _handshake(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    tls: ssl.SSLObject,
    incoming: ssl.MemoryBIO,
    outgoing: ssl.MemoryBIO,
    budget: int,
    flight: bytearray,
) -> None:
    """Pump the client handshake between the socket and OpenSSL's memory BIOs; the start of what
    the server sent (its hello) is kept in ``flight``.

    No transport, no protocol object, no per-connection receive buffer: the cheapest handshake
    asyncio can do, cheaper than ``create_connection(ssl=...)`` on both loops (benchmarks/RESULTS.md,
    "TLS fetch: observing the chain instead of a full handshake").
    """
    while True:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pending = outgoing.read()
            if pending:
                await loop.sock_sendall(sock, pending)
            chunk = await loop.sock_recv(sock, _RECV_SIZE)
            if not chunk:
                raise ProbeError(FailureReason.HANDSHAKE, "connection closed during handshake") from None
            budget -= len(chunk)
            if budget < 0:
                raise ProbeError(
                    FailureReason.CHAIN_TOO_LARGE, "server sent more handshake data than the chain bound allows"
                ) from None
            incoming.write(chunk)
            if len(flight) < _FLIGHT_KEPT:
                flight += chunk[: _FLIGHT_KEPT - len(flight)]
        else:
            pending = outgoing.read()  # our Finished (TLS 1.3): the server sees a complete handshake
            if pending:
                await loop.sock_sendall(sock, pending)
            return


def _close(sock: socket.socket, tls: ssl.SSLObject, outgoing: ssl.MemoryBIO) -> None:
    """Close politely without ever waiting: send close_notify, drain what already arrived (unread
    data would turn our FIN into a reset), close. The peer's close_notify is not awaited, as
    Go's crypto/tls does not either, so a peer that never answers cannot pin the socket."""
    with suppress(ssl.SSLError):
        tls.unwrap()
    _drop(sock, outgoing.read())


def _drop(sock: socket.socket, farewell: bytes) -> None:
    """Send ``farewell`` (a close_notify alert), drain what already arrived, close: never waits."""
    with suppress(OSError):
        sock.send(farewell)
        for _ in range(4):  # bounded: a peer streaming data must not keep us here
            if not sock.recv(_RECV_SIZE):
                break
    sock.close()
