"""The resolver's cache against a real DNS server: TTLs honoured, concurrent lookups coalesced, NXDOMAIN.

The DNS server is a real dnsmasq on loopback (stack/dnsmasq.py) logging every query it receives,
so "one lookup" is counted where it lands, not inside certloop. Time is advanced with the cache's
injected clock: the TTL the server sent decides, not a sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from certloop.errors import FailureReason, ProbeError
from certloop.resolve import AddressCache, Resolver
from stack.dnsmasq import Dnsmasq
from stack.process import wait_until


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[Dnsmasq]:
    server = Dnsmasq(tmp_path / "dns", {"shop.test": ["127.0.0.5"], "both.test": ["127.0.0.7", "::1"]},
                     ttl=30, log_queries=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wait_for_log(dns: Dnsmasq, name: str, count: int) -> list[tuple[str, str]]:
    """The queries of ``name`` dnsmasq logged, once there are ``count`` (it logs after answering)."""
    return wait_until(lambda: len(found := dns.queries(name)) >= count and found, 5,
                      f"{count} queries of {name} in dnsmasq's log", log_tail=lambda: str(dns.queries(name)))


def test_answers_are_kept_for_the_ttl_the_server_sent(dns: Dnsmasq) -> None:
    """Within the record's TTL (30 s here) no query is sent; after it, the name is asked again and
    a changed address is followed."""
    clock = Clock()
    resolver = Resolver([dns.address], cache=AddressCache(clock=clock))
    assert asyncio.run(resolver.resolve("shop.test")) == ["127.0.0.5"]
    dns.set_names({"shop.test": ["127.0.0.6"]})
    dns.reload()
    clock.now += 29.0
    assert asyncio.run(resolver.resolve("shop.test")) == ["127.0.0.5"]
    assert _wait_for_log(dns, "shop.test", 2) == [("A", "shop.test"), ("AAAA", "shop.test")]
    clock.now += 1.5
    assert asyncio.run(resolver.resolve("shop.test")) == ["127.0.0.6"]
    assert len(_wait_for_log(dns, "shop.test", 4)) == 4


def test_concurrent_lookups_of_one_name_send_one_query_per_type(dns: Dnsmasq) -> None:
    """200 probes of one name starting together cost one A and one AAAA query at the server."""
    cache = AddressCache()
    resolver = Resolver([dns.address], cache=cache)

    async def burst() -> list[list[str]]:
        return await asyncio.gather(*(resolver.resolve("both.test") for _ in range(200)))

    answers = asyncio.run(burst())
    assert all(a == ["127.0.0.7", "::1"] for a in answers)
    assert sorted(_wait_for_log(dns, "both.test", 2)) == [("A", "both.test"), ("AAAA", "both.test")]
    assert (cache.lookups, cache.coalesced) == (1, 199)


def test_nxdomain_is_a_dns_failure_and_is_not_cached(dns: Dnsmasq) -> None:
    """A name the server does not know: ProbeError(dns) for every waiter; the next probe asks again
    (a name that comes back is seen at once)."""
    cache = AddressCache()
    resolver = Resolver([dns.address], cache=cache)

    async def burst() -> list[object]:
        return await asyncio.gather(*(resolver.resolve("gone.test") for _ in range(5)), return_exceptions=True)

    failures = asyncio.run(burst())
    assert all(isinstance(f, ProbeError) and f.reason is FailureReason.DNS for f in failures)
    assert len(cache) == 0
    dns.set_names({"gone.test": ["127.0.0.8"]})
    dns.reload()
    assert asyncio.run(resolver.resolve("gone.test")) == ["127.0.0.8"]
    assert cache.lookups == 2


@pytest.mark.parametrize("name", ["a..b.test", ".x", "x" * 64 + ".test", "a\x00b.test", "s\u00fc\u00df.test"])
def test_names_dns_cannot_carry_are_dns_failures(dns: Dnsmasq, name: str) -> None:
    """Empty labels, a label over 63 octets, a NUL: ProbeError(dns), not an exception from dnspython;
    a non-ASCII name is asked in its IDNA form (and is unknown here)."""
    with pytest.raises(ProbeError) as caught:
        asyncio.run(Resolver([dns.address], timeout=1.0).resolve(name))
    assert caught.value.reason is FailureReason.DNS


def test_cache_is_bounded() -> None:
    """At max_entries the expired go first, then the oldest: /probe names cannot grow it forever."""
    clock = Clock()
    cache = AddressCache(max_entries=3, clock=clock)
    cache.put("old", ["192.0.2.1"], clock.now + 1)
    cache.put("a", ["192.0.2.2"], clock.now + 100)
    cache.put("b", ["192.0.2.3"], clock.now + 100)
    clock.now += 2
    cache.put("c", ["192.0.2.4"], clock.now + 100)
    assert (cache.get("old"), cache.get("a"), len(cache)) == (None, ["192.0.2.2"], 3)
    cache.put("d", ["192.0.2.5"], clock.now + 100)
    assert (cache.get("a"), cache.get("d"), len(cache)) == (None, ["192.0.2.5"], 3)
    cache.put("e", ["192.0.2.6"], clock.now - 1)  # already expired: nothing kept
    assert cache.get("e") is None and len(cache) == 3
