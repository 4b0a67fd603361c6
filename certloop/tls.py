"""Fetch the certificate chain a TLS endpoint presents, whatever its validity.

    presented = await fetch("127.0.0.1", 443, server_name="shop.example")
    presented.chain_der      # (leaf, intermediate, ...) as DER, exactly as sent, even if invalid
    presented.tls_version    # "TLS 1.3"

Verification is deliberately *not* done here: the handshake runs with ``CERT_NONE`` so an expired,
self-signed or mismatched chain is still observed, and `certloop.verify` judges it offline at an
injected time. Every failure leaves this module as a :class:`ProbeError` whose ``reason`` comes
from the fixed :class:`FailureReason` set (a Prometheus label value), with a short ``detail`` for
humans. This module is the one seam where ``ssl``/socket/asyncio exceptions are translated.

Cost (the exporter runs thousands of these per second on two cores): a non-blocking socket
connected with ``loop.sock_connect`` (no name resolution, no thread hop: callers pass an IP from
`certloop.resolve`), driven with ``sock_recv``/``sock_sendall``: no transport, no protocol
object, no 256 KiB per-connection buffer as asyncio's SSL transport allocates. By default the
chain is *observed* (`certloop.tlsobserve`: ClientHello out, read up to the Certificate
message, close; CertificateVerify is not checked, see there for the trade-off); anything that
path cannot follow is repeated with a full OpenSSL handshake (one shared
:class:`ssl.SSLContext`, :func:`observation_context`, pumped through memory BIOs). STARTTLS
negotiators talk plaintext over the same raw socket through :class:`Plaintext` first (and again
on the new connection of a fallback). The close sends close_notify and never waits.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from time import perf_counter

from certloop.errors import CertloopError
from certloop.tlsobserve import Observed, Observer, Offer, Refused, Unsupported, offer_for

__all__ = [
    "DEFAULT_MAX_CHAIN_BYTES",
    "PATHS",
    "FailureReason",
    "Negotiator",
    "Plaintext",
    "Presented",
    "ProbeError",
    "fetch",
    "observation_context",
    "observation_offer",
]

DEFAULT_MAX_CHAIN_BYTES = 256 * 1024
"""Upper bound on the summed DER size of a presented chain. OpenSSL already refuses a Certificate
message above its own 100 KiB ``max_cert_list`` (reported as ``chain_too_large`` too), so this
bound is the second line, for builds with a larger limit."""

_RECV_SIZE = 32 * 1024
"""Bytes asked of the kernel per read: two full TLS records."""

_HANDSHAKE_SLACK = 64 * 1024
"""Bytes a handshake may take beyond ``max_chain_bytes`` (hellos, key exchange, tickets) before
the peer is cut off: a server streaming endless records must not hold memory or CPU."""

_PLAINTEXT_BUDGET = 64 * 1024
"""Bytes a STARTTLS peer may send before the upgrade (banners, capability lists). A hostile
server streaming megabytes of banner is cut off here instead of filling memory."""

_PLAINTEXT_MAX_LINE = 16 * 1024


class FailureReason(StrEnum):
    """Why a probe failed: a fixed set, exported as the ``reason`` label."""

    DNS = "dns"
    CONNECT = "connect"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    HANDSHAKE = "handshake"
    STARTTLS = "starttls"
    NO_CERTIFICATE = "no_certificate"
    CHAIN_TOO_LARGE = "chain_too_large"


class ProbeError(CertloopError):
    """A probe failed for ``reason``; ``detail`` is short text safe to show (never a label value).

    ``address``/``port`` say which endpoint failed when known (``fetch_all`` fills them so results
    can be labelled by address).
    """

    def __init__(
        self,
        reason: FailureReason,
        detail: str,
        *,
        address: str | None = None,
        port: int | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.address = address
        self.port = port
        where = f"{address}:{port}: " if address is not None else ""
        super().__init__(f"{where}{reason}: {detail}")

    def at(self, address: str, port: int) -> ProbeError:
        """The same failure, attributed to ``address:port``."""
        err = ProbeError(self.reason, self.detail, address=address, port=port)
        err.__cause__ = self.__cause__
        return err


@dataclass(frozen=True, slots=True)
class Presented:
    """What one endpoint presented in one handshake."""

    address: str
    port: int
    server_name: str | None
    chain_der: tuple[bytes, ...]
    """The chain exactly as sent, leaf first, unverified."""
    tls_version: str
    """``TLS 1.0`` .. ``TLS 1.3``."""
    cipher: str
    connect_seconds: float
    handshake_seconds: float
    """From the TLS ClientHello to the end of the handshake (including STARTTLS negotiation)."""
    path: str = "openssl"
    """``observe`` (read by `certloop.tlsobserve`) or ``openssl`` (a full OpenSSL handshake).
    Diagnostic only: never a metric label (see :data:`PATHS` for counts)."""


class Plaintext:
    """The plaintext side of a connection before a STARTTLS upgrade: bounded reads and writes.

    Reads draw from a budget of bytes for the whole negotiation (:data:`_PLAINTEXT_BUDGET`) and
    lines are capped, so a peer can neither exhaust memory nor stall a probe past its deadline
    (the caller bounds time). Running out of budget or an early close raises
    ``ProbeError(starttls)``.
    """

    __slots__ = ("_budget", "_buffer", "_loop", "_sock")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        self._buffer = bytearray()
        self._budget = _PLAINTEXT_BUDGET

    async def send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self._sock, data)

    async def _fill(self) -> None:
        if self._budget <= 0:
            raise ProbeError(
                FailureReason.STARTTLS, f"server sent more than {_PLAINTEXT_BUDGET} bytes before TLS"
            )
        chunk = await self._loop.sock_recv(self._sock, min(4096, self._budget))
        if not chunk:
            raise ProbeError(FailureReason.STARTTLS, "server closed the connection before TLS")
        self._budget -= len(chunk)
        self._buffer += chunk

    async def read_line(self) -> bytes:
        """One line without its CRLF/LF terminator."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buffer) > _PLAINTEXT_MAX_LINE:
                raise ProbeError(
                    FailureReason.STARTTLS, f"server sent a line longer than {_PLAINTEXT_MAX_LINE} bytes"
                )
            start = len(self._buffer)
            await self._fill()

    async def read_exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes (bounded by the budget)."""
        if size > _PLAINTEXT_BUDGET:
            raise ProbeError(FailureReason.STARTTLS, f"server announced a {size}-byte message before TLS")
        while len(self._buffer) < size:
            await self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def check_drained(self) -> None:
        """Bytes left over after the server said "go ahead" would be read as TLS: refuse them."""
        if self._buffer:
            raise ProbeError(FailureReason.STARTTLS, "server sent unexpected data after accepting STARTTLS")


Negotiator = Callable[[Plaintext, "str | None"], Awaitable[None]]
"""A STARTTLS negotiator: speaks the protocol's plaintext preamble (given the SNI name, for
protocols that greet by name) and returns when the server is ready for the TLS ClientHello, or
raises ``ProbeError(starttls)``. See `certloop.starttls.STARTTLS`."""


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


_CONNECTING, _NEGOTIATING, _HANDSHAKING = "connect", "starttls", "handshake"

PATHS: Counter[str] = Counter()
"""How handshakes were done since start: ``observe`` (the fast path completed), ``openssl``
(a full OpenSSL handshake: requested, or after a fallback) and ``fallback`` (the fast path gave
up and the probe was repeated through OpenSSL). Cheap to keep; an exporter may expose it."""


@cache
def observation_offer() -> Offer:
    """The fast path's ClientHello contents, mirroring :func:`observation_context`: the same
    cipher suites in the same order (names as OpenSSL reports them), groups, signature
    algorithms and versions, so a server negotiates the same version and cipher on both paths."""
    return offer_for(observation_context())


async def fetch(
    address: str,
    port: int,
    *,
    server_name: str | None = None,
    starttls: Negotiator | str | None = None,
    connect_timeout: float = 5.0,
    handshake_timeout: float = 5.0,
    max_chain_bytes: int = DEFAULT_MAX_CHAIN_BYTES,
    context: ssl.SSLContext | None = None,
    observe: bool = True,
) -> Presented:
    """Connect to ``address`` (an IPv4/IPv6 literal), handshake and return the presented chain.

    ``server_name`` is sent as SNI (an IP literal is never sent as SNI). ``starttls`` is a
    :data:`Negotiator` or a name from `certloop.starttls.STARTTLS`; its plaintext exchange counts
    against ``handshake_timeout``. Raises :class:`ProbeError`.

    By default the chain is read by `certloop.tlsobserve` (no CertificateVerify check, no
    Finished: ~4x less CPU); whatever that path cannot handle is repeated over a new connection
    with a full OpenSSL handshake, within the same deadline. ``observe=False`` or an explicit
    ``context`` always uses OpenSSL. ``Presented.path`` says which path produced the result.
    """
    negotiator = _negotiator(starttls) if isinstance(starttls, str) else starttls
    loop = asyncio.get_running_loop()
    sni = server_name.rstrip(".") if server_name and not _is_ip(server_name) else None
    sock: socket.socket | None = None
    phase = _CONNECTING
    started = perf_counter()
    path = "observe" if observe and context is None else "openssl"
    try:
        async with asyncio.timeout(connect_timeout) as deadline:
            sock = await _connect(loop, address, port)
            connected = perf_counter()
            deadline.reschedule(loop.time() + handshake_timeout)
            if negotiator is not None:
                phase = _NEGOTIATING
                await _negotiate(loop, sock, negotiator, sni)
            phase = _HANDSHAKING
            bound = max_chain_bytes + _HANDSHAKE_SLACK
            seen: Observed | None = None
            if path == "observe":
                try:
                    seen = await _observe(loop, sock, sni, bound)
                except Unsupported:
                    PATHS["fallback"] += 1
                    path = "openssl"
                    sock.close()
                    sock = await _connect(loop, address, port)
                    if negotiator is not None:
                        phase = _NEGOTIATING
                        await _negotiate(loop, sock, negotiator, sni)
                        phase = _HANDSHAKING
            if seen is None:
                seen = await _openssl(loop, sock, sni, context or observation_context(), bound)
            done = perf_counter()
    except ProbeError as exc:
        if sock is not None:
            sock.close()
        raise exc.at(address, port) from exc.__cause__
    except Refused as exc:
        if sock is not None:
            sock.close()
        reason = FailureReason.CHAIN_TOO_LARGE if exc.too_large else FailureReason.HANDSHAKE
        what = "certificate message too large" if exc.too_large else "TLS handshake failed"
        raise ProbeError(reason, f"{what}: {exc.detail}", address=address, port=port) from None
    except Exception as exc:
        if sock is not None:
            sock.close()
        raise _translate(exc, phase, connect_timeout, handshake_timeout).at(address, port) from exc
    except BaseException:  # cancelled by the caller: release the socket, let it propagate
        if sock is not None:
            sock.close()
        raise
    PATHS[path] += 1
    chain = seen.chain_der
    if not chain:
        raise ProbeError(
            FailureReason.NO_CERTIFICATE, "server completed the handshake without a certificate",
            address=address, port=port,
        )
    size = sum(map(len, chain))
    if size > max_chain_bytes:
        raise ProbeError(
            FailureReason.CHAIN_TOO_LARGE,
            f"presented chain is {size} bytes (limit {max_chain_bytes})",
            address=address, port=port,
        )
    return Presented(
        address=address,
        port=port,
        server_name=sni,
        chain_der=chain,
        tls_version=seen.tls_version,
        cipher=seen.cipher,
        connect_seconds=connected - started,
        handshake_seconds=done - connected,
        path=path,
    )


async def _connect(loop: asyncio.AbstractEventLoop, address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _negotiate(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, negotiator: Negotiator, sni: str | None
) -> None:
    plain = Plaintext(loop, sock)
    await negotiator(plain, sni)
    plain.check_drained()


async def _observe(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, sni: str | None, budget: int
) -> Observed:
    """The fast path (`certloop.tlsobserve`): ClientHello out, server flight in until the
    Certificate message, close. Raises ``Unsupported`` for a fallback, ``Refused`` (final)."""
    observer = Observer(observation_offer(), sni)
    try:
        await loop.sock_sendall(sock, observer.client_hello)
        while True:
            chunk = await loop.sock_recv(sock, _RECV_SIZE)
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
    _drop(sock, observer.close_alert())
    return seen


async def _openssl(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, sni: str | None, context: ssl.SSLContext, budget: int
) -> Observed:
    """A full OpenSSL client handshake through memory BIOs, then a polite close."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    await _handshake(loop, sock, tls, incoming, outgoing, budget)
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
) -> None:
    """Pump the client handshake between the socket and OpenSSL's memory BIOs.

    No transport, no protocol object, no per-connection receive buffer: the cheapest handshake
    asyncio can do (~10 % less CPU than ``create_connection(ssl=...)`` here), on both loops.
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


def _is_ip(name: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
    except OSError:
        return False
    return True


def _negotiator(name: str) -> Negotiator:
    from certloop.starttls import STARTTLS  # imported late: certloop.starttls imports this module

    try:
        return STARTTLS[name]
    except KeyError:
        raise ValueError(f"unknown STARTTLS protocol {name!r}; known: {', '.join(sorted(STARTTLS))}") from None


def _translate(exc: Exception, phase: str, connect_timeout: float, handshake_timeout: float) -> ProbeError:
    """The one place where foreign exceptions become a :class:`FailureReason`."""
    if isinstance(exc, TimeoutError):
        if phase == _CONNECTING:
            return ProbeError(FailureReason.TIMEOUT, f"no TCP connection within {connect_timeout:g}s")
        what = "STARTTLS negotiation" if phase == _NEGOTIATING else "TLS handshake"
        return ProbeError(FailureReason.TIMEOUT, f"{what} not finished within {handshake_timeout:g}s")
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return ProbeError(FailureReason.HANDSHAKE, "connection closed during handshake")
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or type(exc).__name__
        if reason in ("EXCESSIVE_MESSAGE_SIZE", "CERT_LENGTH_MISMATCH"):
            return ProbeError(FailureReason.CHAIN_TOO_LARGE, f"certificate message too large ({reason})")
        if reason == "NO_CERTIFICATE_RETURNED" or "PEER_DID_NOT_RETURN_A_CERTIFICATE" in reason:
            return ProbeError(FailureReason.NO_CERTIFICATE, reason)
        return ProbeError(FailureReason.HANDSHAKE, f"TLS handshake failed: {reason}")
    if isinstance(exc, ConnectionRefusedError):
        return ProbeError(FailureReason.REFUSED, "connection refused")
    if isinstance(exc, OSError):
        what = {
            errno.ECONNRESET: "connection reset",
            errno.EPIPE: "connection closed",
            errno.ECONNABORTED: "connection aborted",
            errno.ENETUNREACH: "network unreachable",
            errno.EHOSTUNREACH: "host unreachable",
            errno.EADDRNOTAVAIL: "address not available",
            errno.EAFNOSUPPORT: "address family not supported",
        }.get(exc.errno or 0) or (type(exc).__name__ if exc.errno is None else errno.errorcode.get(exc.errno, "?"))
        if phase == _CONNECTING:
            return ProbeError(FailureReason.CONNECT, what)
        if isinstance(exc, ConnectionAbortedError) and "SSL handshake" in str(exc):
            return ProbeError(FailureReason.TIMEOUT, f"TLS handshake not finished within {handshake_timeout:g}s")
        reason = FailureReason.STARTTLS if phase == _NEGOTIATING else FailureReason.HANDSHAKE
        return ProbeError(reason, f"{what} during {phase}")
    if isinstance(exc, EOFError):
        return ProbeError(FailureReason.HANDSHAKE, "connection closed during handshake")
    raise exc
