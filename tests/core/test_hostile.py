"""Hostile peers: every misbehaviour ends in one clear FailureReason, and probing carries on.

The peers in tests/support/servers.py are written for these tests (the hostility *is* the
behaviour under test, no real server misbehaves on demand): a TCP peer that never speaks, one
that answers with garbage, one that resets mid-handshake, a TLS server presenting a ~140 KB
chain, a plaintext banner that never ends, a full accept backlog, and a closed port.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certloop.errors import FailureReason, ProbeError
from certloop.tls import Presented, fetch
from stack.process import LOOPBACK, free_port
from tests.support.pki import Pki
from tests.support.servers import (
    ThreadedServer,
    endless_banner,
    garbage,
    reset_mid_handshake,
    scripted,
    server_context,
    silent,
    tls_after,
)


async def failure(port: int, **kwargs: object) -> ProbeError:
    try:
        await fetch(LOOPBACK, port, server_name="shop.example", **kwargs)  # type: ignore[arg-type]
    except ProbeError as exc:
        return exc
    raise AssertionError("fetch succeeded against a hostile peer")


def test_silent_peer_is_a_handshake_timeout() -> None:
    """A peer that accepts TCP and never answers the ClientHello: timeout, bounded by handshake_timeout."""
    with ThreadedServer(silent) as srv:
        err = asyncio.run(asyncio.wait_for(failure(srv.port, handshake_timeout=0.3), 5))
    assert err.reason is FailureReason.TIMEOUT
    assert err.detail == "TLS handshake not finished within 0.3s"


def test_garbage_is_a_handshake_failure() -> None:
    """Bytes that are not TLS: reason handshake, with OpenSSL's reason in the detail."""
    with ThreadedServer(garbage) as srv:
        err = asyncio.run(failure(srv.port))
    assert err.reason is FailureReason.HANDSHAKE
    assert "WRONG_VERSION_NUMBER" in err.detail


def test_reset_mid_handshake_is_a_handshake_failure() -> None:
    """A TCP reset after the ClientHello started: reason handshake, "connection reset"."""
    with ThreadedServer(reset_mid_handshake) as srv:
        err = asyncio.run(failure(srv.port))
    assert err.reason is FailureReason.HANDSHAKE
    assert "reset" in err.detail or "closed" in err.detail


def test_huge_chain_is_chain_too_large(tmp_path: Path) -> None:
    """A chain of 300 intermediates (~140 KB) exceeds OpenSSL's certificate message bound."""
    pki = Pki()
    leaf = pki.leaf(["shop.example"])
    paths = leaf.write(tmp_path, "shop")
    huge = tmp_path / "huge.pem"
    huge.write_bytes(leaf.pem + pki.intermediate.cert.public_bytes(Encoding.PEM) * 300)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(huge, paths["key"])
    with ThreadedServer(tls_after(ctx)) as srv:
        err = asyncio.run(failure(srv.port))
    assert err.reason is FailureReason.CHAIN_TOO_LARGE


def test_closed_port_is_refused() -> None:
    """Nothing listens: reason refused (distinct from connect errors and timeouts)."""
    err = asyncio.run(failure(free_port()))
    assert err.reason is FailureReason.REFUSED
    assert err.detail == "connection refused"


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listener that never accepts, its backlog filled, so further SYNs go unanswered."""
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex((LOOPBACK, port))  # EINPROGRESS: the SYN is queued, never accepted
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_unanswered_connect_is_a_connect_timeout(full_backlog: int) -> None:
    """A SYN nobody answers: reason timeout, bounded by connect_timeout, not handshake_timeout."""
    err = asyncio.run(asyncio.wait_for(failure(full_backlog, connect_timeout=0.3, handshake_timeout=30), 5))
    assert err.reason is FailureReason.TIMEOUT
    assert err.detail == "no TCP connection within 0.3s"


def test_endless_starttls_banner_is_cut_off() -> None:
    """A 10 MB SMTP banner: the plaintext budget stops reading at 64 KiB, reason starttls."""
    with ThreadedServer(endless_banner) as srv:
        err = asyncio.run(failure(srv.port, starttls="smtp"))
    assert err.reason is FailureReason.STARTTLS
    assert err.detail == "server sent more than 65536 bytes before TLS"


def test_endless_line_is_cut_off() -> None:
    """One 1 MB line without a newline: stopped at the line bound, reason starttls."""
    with ThreadedServer(scripted(b"220 " + b"x" * 1_000_000)) as srv:
        err = asyncio.run(failure(srv.port, starttls="smtp"))
    assert err.reason is FailureReason.STARTTLS
    assert err.detail == "server sent a line longer than 16384 bytes"


def test_stalling_starttls_peer_is_a_timeout() -> None:
    """A mail server that greets and then never answers EHLO: timeout during STARTTLS negotiation."""
    with ThreadedServer(scripted(b"220 mail ESMTP\r\n")) as srv:
        err = asyncio.run(failure(srv.port, starttls="smtp", handshake_timeout=0.3))
    assert err.reason is FailureReason.TIMEOUT
    assert err.detail == "STARTTLS negotiation not finished within 0.3s"


def test_hostile_peers_do_not_disturb_a_healthy_probe(tmp_path: Path) -> None:
    """All hostile peers probed at once in one loop, next to a healthy server: each fails with its
    own reason, the healthy probe succeeds, and the loop keeps probing afterwards."""
    leaf = Pki().leaf(["shop.example"])
    healthy = tls_after(server_context(leaf, tmp_path, "shop"))
    with (
        ThreadedServer(silent) as quiet,
        ThreadedServer(garbage) as junk,
        ThreadedServer(reset_mid_handshake) as rst,
        ThreadedServer(endless_banner) as banner,
        ThreadedServer(healthy) as good,
    ):
        async def sweep() -> list[Presented | BaseException]:
            probes = [
                fetch(LOOPBACK, quiet.port, handshake_timeout=0.5),
                fetch(LOOPBACK, junk.port),
                fetch(LOOPBACK, rst.port),
                fetch(LOOPBACK, banner.port, starttls="smtp"),
                fetch(LOOPBACK, free_port()),
                fetch(LOOPBACK, good.port, server_name="shop.example"),
            ]
            first = await asyncio.gather(*probes, return_exceptions=True)
            again = await fetch(LOOPBACK, good.port, server_name="shop.example")
            return [*first, again]

        results = asyncio.run(sweep())
    reasons = [r.reason if isinstance(r, ProbeError) else type(r).__name__ for r in results]
    assert reasons == [
        FailureReason.TIMEOUT,
        FailureReason.HANDSHAKE,
        FailureReason.HANDSHAKE,
        FailureReason.STARTTLS,
        FailureReason.REFUSED,
        "Presented",
        "Presented",
    ]
