"""certloop.resolve: every A/AAAA address, from a real DNS server or the system resolver, each probed.

The DNS server is a real pebble-challtestsrv on loopback (records set through its management
API); the TLS peers are a real nginx listening on 127.0.0.1 and 127.0.0.2 with different leaves
for one name, so results must be told apart by address.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certloop.errors import FailureReason, ProbeError
from certloop.resolve import Resolver, fetch_all, is_ip_literal, parse_nameserver
from certloop.tls import Presented
from stack.challtestsrv import ChallTestSrv
from stack.nginx import Nginx
from stack.process import LOOPBACK, free_port
from tests.support.pki import Pki


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


@pytest.mark.parametrize(("host", "literal"), [
    ("192.0.2.7", True), ("2001:db8::1", True), ("::ffff:192.0.2.7", True), ("::", True),
    ("shop.example", False), ("192.0.2", False), ("192.0.2.256", False), ("01.2.3.4", False),
    ("[2001:db8::1]", False), ("fe80::1%eth0", True), ("fe80::1%", False), ("192.0.2.7%eth0", False),
    ("1.2.3.4\x00", False), ("", False), ("1e100.net", False),
])
def test_ip_literals_are_told_from_names(host: str, literal: bool) -> None:
    """Only a complete IPv4 dotted quad or an IPv6 address is a literal; anything else is a name to resolve."""
    assert is_ip_literal(host) is literal


@pytest.mark.parametrize("spec", ["dns.example:53", "127.0.0.1:99999", "[::1", "127.0.0.1:x"])
def test_bad_nameserver_specs(spec: str) -> None:
    """A nameserver that is not an IP address with an optional valid port is rejected."""
    with pytest.raises(ValueError, match="nameserver"):
        parse_nameserver(spec)


def test_fetch_all_probes_every_address_with_the_original_sni(
    challtestsrv: ChallTestSrv, nginx: Nginx, tmp_path: Path
) -> None:
    """One name, two addresses serving different leaves: each probed with SNI shop.example and
    labelled by address; an address with no server is a failure attributed to that address."""
    pki = Pki()
    first, second = pki.leaf(["shop.example"]), pki.leaf(["shop.example"])
    port = free_port()
    for address, issued in (("127.0.0.1", first), ("127.0.0.2", second)):
        paths = issued.write(tmp_path / "certs", address)
        nginx.add_site(["shop.example"], paths["fullchain"], paths["key"], [(address, port)])
        # a default site on each address so a probe without the right SNI would get another leaf
        other = pki.leaf(["other.example"]).write(tmp_path / "certs", f"other-{address}")
        nginx.add_site(["other.example"], other["fullchain"], other["key"], [(address, port)], default=True)
    nginx.start()
    challtestsrv.add_a("shop.example", ["127.0.0.1", "127.0.0.2", "127.0.0.3"])
    resolver = Resolver([challtestsrv.dns_address])

    results = asyncio.run(fetch_all("shop.example", port, resolver=resolver, connect_timeout=2.0))

    by_address: dict[str | None, Presented | ProbeError] = {r.address: r for r in results}
    assert list(by_address) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    one, two, three = by_address["127.0.0.1"], by_address["127.0.0.2"], by_address["127.0.0.3"]
    assert isinstance(one, Presented) and isinstance(two, Presented)
    assert one.server_name == two.server_name == "shop.example"
    assert one.chain_der[0] == first.cert.public_bytes(Encoding.DER)
    assert two.chain_der[0] == second.cert.public_bytes(Encoding.DER)
    assert isinstance(three, ProbeError) and three.reason is FailureReason.REFUSED and three.port == port


def test_fetch_all_on_an_ip_literal_sends_no_sni_unless_asked(nginx: Nginx, tmp_path: Path) -> None:
    """An IP target is probed once without SNI; an explicit server_name is still honoured."""
    pki = Pki()
    default, named = pki.leaf(["default.example"]), pki.leaf(["shop.example"])
    port = free_port()
    for name, issued, is_default in (("default", default, True), ("shop", named, False)):
        paths = issued.write(tmp_path, name)
        nginx.add_site([f"{name}.example"], paths["fullchain"], paths["key"], [(LOOPBACK, port)], default=is_default)
    nginx.start()
    resolver = Resolver()
    [plain] = asyncio.run(fetch_all(LOOPBACK, port, resolver=resolver))
    [sni] = asyncio.run(fetch_all(LOOPBACK, port, resolver=resolver, server_name="shop.example"))
    assert isinstance(plain, Presented) and isinstance(sni, Presented)
    assert plain.server_name is None and plain.chain_der[0] == default.cert.public_bytes(Encoding.DER)
    assert sni.chain_der[0] == named.cert.public_bytes(Encoding.DER)
