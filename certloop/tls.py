"""Fetch the certificate chain a TLS endpoint presents, whatever its validity.

    presented = await fetch("127.0.0.1", 443, server_name="shop.example")
    presented.chain_der      # (leaf, intermediate, ...) as DER, exactly as sent, even if invalid
    presented.tls_version    # "TLS 1.3"

Verification is deliberately *not* done here: the handshake runs with ``CERT_NONE`` so an expired,
self-signed or mismatched chain is still observed, and `certloop.verify` judges it offline at an
injected time. Every failure leaves this module as a :class:`~certloop.errors.ProbeError` whose
``reason`` comes from the fixed :class:`~certloop.errors.FailureReason` set (a Prometheus label value),
with a short ``detail`` for humans. This module is the one seam where ``ssl``/socket/asyncio exceptions
are translated.

Cost matters here, as this runs once per address of every endpoint and every ``/probe`` (what it costs:
benchmarks/RESULTS.md, "TLS fetch: observing the chain instead of a full handshake"): a non-blocking socket
connected without name resolution or a thread hop (callers pass an IP from
`certloop.resolve`, see :func:`_connect`), driven with ``sock_recv``/``sock_sendall``: no transport, no protocol
object, no 256 KiB per-connection buffer as asyncio's SSL transport allocates. By default the
chain is *observed* (`certloop.tlsobserve`: ClientHello out, read up to the Certificate
message, close; CertificateVerify is not checked, see there for the trade-off); anything that
path cannot follow is repeated with a full OpenSSL handshake (one shared
:class:`ssl.SSLContext`, pumped through memory BIOs): both paths are in `certloop.tlshandshake`.
STARTTLS negotiators talk plaintext over the same raw socket through
:class:`~certloop.plaintext.Plaintext` first (and again on the new connection of a fallback).
The close sends close_notify and never waits.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from collections import Counter
from dataclasses import dataclass
from time import perf_counter

from certloop.errors import FailureReason, ProbeError, Refused, Unsupported
from certloop.hostnames import parse_ip
from certloop.hostnames import server_name as wire_name
from certloop.plaintext import Negotiator, Plaintext
from certloop.tlshandshake import SocketWatch, observation_context, observe_chain, openssl_handshake
from certloop.tlsobserve import Observed

__all__ = ["DEFAULT_MAX_CHAIN_BYTES", "PATHS", "Presented", "fetch"]

DEFAULT_MAX_CHAIN_BYTES = 256 * 1024
"""Upper bound on the summed DER size of a presented chain. OpenSSL already refuses a Certificate
message above its own 100 KiB ``max_cert_list`` (reported as ``chain_too_large`` too), so this
bound is the second line, for builds with a larger limit."""

_HANDSHAKE_SLACK = 64 * 1024
"""Bytes a handshake may take beyond ``max_chain_bytes`` (hellos, key exchange, tickets) before
the peer is cut off: a server streaming endless records must not hold memory or CPU."""


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


_CONNECTING, _NEGOTIATING, _HANDSHAKING = "connect", "starttls", "handshake"

PATHS: Counter[str] = Counter()
"""How handshakes were done since start: ``observe`` (the fast path completed), ``openssl``
(a full OpenSSL handshake: requested, or after a fallback) and ``fallback`` (the fast path gave
up and the probe was repeated through OpenSSL). Cheap to keep; an exporter may expose it."""


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

    ``server_name`` is sent as SNI in its A-label form (`certloop.hostnames.server_name`: IDNA 2008,
    UTS 46); a name that cannot be sent is ``ProbeError(bad_server_name)`` before connecting. An IP
    literal is never sent as SNI. ``starttls`` is a
    :data:`Negotiator` or a name from `certloop.starttls.STARTTLS`; its plaintext exchange counts
    against ``handshake_timeout``. Raises :class:`ProbeError`.

    By default the chain is read by `certloop.tlsobserve` (no CertificateVerify check, no
    Finished: a fraction of the CPU of a handshake); whatever that path cannot handle is repeated over a new connection
    with a full OpenSSL handshake, within the same deadline. ``observe=False`` or an explicit
    ``context`` always uses OpenSSL. ``Presented.path`` says which path produced the result.
    """
    negotiator = _negotiator(starttls) if isinstance(starttls, str) else starttls
    loop = asyncio.get_running_loop()
    sni: str | None = None
    if server_name and parse_ip(server_name) is None:
        try:
            sni = wire_name(server_name)
        except ValueError as exc:  # before any byte is sent: the same reason on both paths
            raise ProbeError(FailureReason.BAD_SERVER_NAME, str(exc), address=address, port=port) from None
    sock: socket.socket | None = None
    watch: SocketWatch | None = None
    phase = _CONNECTING
    started = perf_counter()
    path = "observe" if observe and context is None else "openssl"
    try:
        with _Deadline(loop, loop.time() + connect_timeout) as deadline:
            sock, watch = await _connect(loop, address, port)
            connected = perf_counter()
            deadline.reschedule(loop.time() + handshake_timeout)
            if negotiator is not None or path != "observe":
                watch.close()  # STARTTLS and OpenSSL drive the socket through loop.sock_*
            if negotiator is not None:
                phase = _NEGOTIATING
                await _negotiate(loop, sock, negotiator, sni)
            phase = _HANDSHAKING
            bound = max_chain_bytes + _HANDSHAKE_SLACK
            seen: Observed | None = None
            if path == "observe":
                if negotiator is not None:
                    watch = SocketWatch(loop, sock)
                try:
                    seen = await observe_chain(sock, watch, sni, bound)
                except Unsupported:
                    PATHS["fallback"] += 1
                    path = "openssl"
                    _release(sock, watch)
                    sock, watch = await _connect(loop, address, port)
                    watch.close()
                    if negotiator is not None:
                        phase = _NEGOTIATING
                        await _negotiate(loop, sock, negotiator, sni)
                        phase = _HANDSHAKING
            if seen is None:
                seen = await openssl_handshake(loop, sock, sni, context or observation_context(), bound)
            done = perf_counter()
    except ProbeError as exc:
        _release(sock, watch)
        raise exc.at(address, port) from exc.__cause__
    except Refused as exc:
        _release(sock, watch)
        reason = FailureReason.CHAIN_TOO_LARGE if exc.too_large else FailureReason.HANDSHAKE
        what = "certificate message too large" if exc.too_large else "TLS handshake failed"
        raise ProbeError(reason, f"{what}: {exc.detail}", address=address, port=port) from None
    except Exception as exc:
        _release(sock, watch)
        raise _translate(exc, phase, connect_timeout, handshake_timeout).at(address, port) from exc
    except BaseException:  # cancelled by the caller: release the socket, let it propagate
        _release(sock, watch)
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


def _release(sock: socket.socket | None, watch: SocketWatch | None) -> None:
    if watch is not None:
        watch.close()
    if sock is not None:
        sock.close()


class _Deadline:
    """``asyncio.timeout`` for the probe's hot path, on the loop and task the caller already has.

    The same contract (the task is cancelled at ``when``; leaving the block turns that cancellation,
    and only that one, into ``TimeoutError``; a cancellation from outside propagates), without what
    it costs per probe in asyncio 3.11: a running-loop lookup on entry and on each reschedule (each
    one a ``getpid`` system call) and two coroutine frames.
    """

    __slots__ = ("_expired", "_handle", "_loop", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a probe deadline must be used inside a task")
        self._loop = loop
        self._task = task
        self._expired = False
        self._handle = loop.call_at(when, self._expire)

    def reschedule(self, when: float) -> None:
        self._handle.cancel()
        self._handle = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __enter__(self) -> _Deadline:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._handle.cancel()
        if self._expired and self._task.uncancel() == 0 and kind is asyncio.CancelledError:
            raise TimeoutError from exc


async def _connect(loop: asyncio.AbstractEventLoop, address: str, port: int) -> tuple[socket.socket, SocketWatch]:
    """A non-blocking TCP connection to an IP literal, and the watch its reads will wait on.

    Not ``loop.sock_connect``: uvloop's passes every address through ``getaddrinfo`` without the
    socket type, which misses its numeric fast path and sends each connect through libuv's thread
    pool (a worker wake-up and an eventfd round trip per probe). The connect is started here and
    the socket's writability awaited, on both loops.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    watch = SocketWatch(loop, sock)
    try:
        code = sock.connect_ex((address, port))
        if code in _IN_PROGRESS:
            await watch.writable()
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))
    except BaseException:
        _release(sock, watch)
        raise
    return sock, watch


_IN_PROGRESS = frozenset((errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR))


async def _negotiate(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, negotiator: Negotiator, sni: str | None
) -> None:
    plain = Plaintext(loop, sock)
    await negotiator(plain, sni)
    plain.check_drained()


def _negotiator(name: str) -> Negotiator:
    from certloop.starttls import STARTTLS  # on first use: it loads every protocol module

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
