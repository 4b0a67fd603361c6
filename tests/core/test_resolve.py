"""certloop.resolve: every A/AAAA address, from a real DNS server or the system resolver, each probed.

The DNS server is a real pebble-challtestsrv on loopback (records set through its management
API); the TLS peers are a real nginx listening on 127.0.0.1 and 127.0.0.2 with different leaves
for one name, so results must be told apart by address.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from certloop.errors import FailureReason, ProbeError
from certloop.resolve import Resolver, parse_nameserver
from stack.challtestsrv import ChallTestSrv
from stack.process import LOOPBACK, free_port


def test_nameserver_answers_every_a_and_aaaa(challtestsrv: ChallTestSrv) -> None:
    """All A and AAAA records of a name, deduplicated, IPv4 first, numerically ordered."""
    challtestsrv.add_a("shop.example", ["127.0.0.2", "127.0.0.1", "127.0.0.2"])
    challtestsrv.add_aaaa("shop.example", ["::1"])
    resolver = Resolver([challtestsrv.dns_address])
    assert asyncio.run(resolver.resolve("shop.example")) == ["127.0.0.1", "127.0.0.2", "::1"]
    assert asyncio.run(resolver.resolve("shop.example.")) == ["127.0.0.1", "127.0.0.2", "::1"]


def test_name_without_addresses_is_dns_failure(challtestsrv: ChallTestSrv) -> None:
    """A name with neither A nor AAAA records from the configured server: ProbeError(dns)."""
    challtestsrv.set_default_ipv4("")
    with pytest.raises(ProbeError) as caught:
        asyncio.run(Resolver([challtestsrv.dns_address]).resolve("nothing.example"))
    assert caught.value.reason is FailureReason.DNS
    assert caught.value.detail == "nothing.example: no A or AAAA records"


def test_silent_nameserver_is_dns_timeout() -> None:
    """A nameserver that never answers (a UDP port nobody reads): ProbeError(dns) within the timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind((LOOPBACK, 0))
        address = f"{LOOPBACK}:{hole.getsockname()[1]}"
        with pytest.raises(ProbeError) as caught:
            asyncio.run(asyncio.wait_for(Resolver([address], timeout=0.5).resolve("shop.example"), 5))
    assert caught.value.reason is FailureReason.DNS
    assert "within 0.5s" in caught.value.detail


def test_refused_nameserver_fails_at_once_and_leaves_the_loop_clean() -> None:
    """A nameserver port that refuses (nothing bound: ICMP port unreachable) is ProbeError(dns)
    naming the servers, well before the timeout, with no socket left watched on the loop."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spare:
        spare.bind((LOOPBACK, 0))
        port = spare.getsockname()[1]
    resolver = Resolver([f"{LOOPBACK}:{port}"], timeout=3.0)

    async def go() -> tuple[ProbeError, float, int, int]:
        loop = asyncio.get_running_loop()
        watched = loop._selector.get_map  # type: ignore[attr-defined]  # the default loop's registrations
        before = len(watched())
        started = loop.time()
        with pytest.raises(ProbeError) as caught:
            await resolver.resolve("shop.example")
        return caught.value, loop.time() - started, before, len(watched())

    error, elapsed, before, after = asyncio.run(go())
    assert error.reason is FailureReason.DNS and "every nameserver failed" in error.detail
    assert elapsed < 2.0
    assert after == before


def test_ip_literals_and_localhost() -> None:
    """IP literals come back as they are; localhost resolves through the system resolver and,
    per RFC 6761, without asking a configured DNS server."""
    system = Resolver()
    assert asyncio.run(system.resolve("192.0.2.7")) == ["192.0.2.7"]
    assert asyncio.run(system.resolve("2001:db8::1")) == ["2001:db8::1"]
    assert "127.0.0.1" in asyncio.run(system.resolve("localhost"))
    configured = Resolver([f"{LOOPBACK}:{free_port()}"], timeout=0.5)
    assert asyncio.run(configured.resolve("localhost")) == ["127.0.0.1", "::1"]


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [("127.0.0.1:8053", ("127.0.0.1", 8053)), ("10.0.0.1", ("10.0.0.1", 53)), ("[::1]:5353", ("::1", 5353)),
     ("::1", ("::1", 53))],
)
def test_nameserver_specs(spec: str, parsed: tuple[str, int]) -> None:
    """Nameservers are IP[:port] or [IPv6]:port; the port defaults to 53."""
    assert parse_nameserver(spec) == parsed


@pytest.mark.parametrize("spec", ["dns.example:53", "127.0.0.1:99999", "[::1", "127.0.0.1:x"])
def test_bad_nameserver_specs(spec: str) -> None:
    """A nameserver that is not an IP address with an optional valid port is rejected."""
    with pytest.raises(ValueError, match="nameserver"):
        parse_nameserver(spec)


