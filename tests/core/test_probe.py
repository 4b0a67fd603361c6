"""certloop.probe: the one probe path (names, addresses, per-address results) every caller shares.

The table tests pin the IP-literal rule and the SNI / verified-name rule; the network tests run
against a real nginx on 127.0.0.1 and 127.0.0.2 and a real pebble-challtestsrv for DNS.
"""

from __future__ import annotations

import asyncio
import random
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certloop.caches import Caches
from certloop.errors import FailureReason, ProbeError
from certloop.hostnames import covers, parse_ip
from certloop.probe import Names, addresses_of, probe_all, target_names
from certloop.resolve import Resolver
from stack.challtestsrv import ChallTestSrv
from stack.nginx import Nginx
from stack.process import LOOPBACK, free_port
from tests.support.pki import Pki


@pytest.mark.parametrize(("host", "literal"), [
    ("192.0.2.7", "192.0.2.7"), ("2001:db8::1", "2001:db8::1"), ("::ffff:192.0.2.7", "::ffff:c000:207"),
    ("::", "::"), ("[2001:db8::1]", "2001:db8::1"), ("fe80::1%eth0", "fe80::1%eth0"),
    ("[fe80::1%eth0]", "fe80::1%eth0"), ("2001:DB8:0::1", "2001:db8::1"),
    ("shop.example", None), ("192.0.2", None), ("192.0.2.256", None), ("01.2.3.4", None),
    ("fe80::1%", None), ("192.0.2.7%eth0", None), ("[192.0.2.7]", None), ("[2001:db8::1", None),
    ("1.2.3.4\x00", None), ("", None), ("1e100.net", None), ("2001.example", None),
])
def test_one_ip_literal_rule(host: str, literal: str | None) -> None:
    """Only a dotted quad or an IPv6 address (bracketed or zoned, zone non-empty, IPv6 only) is a
    literal, and it is the same rule for the resolver and the probe (the address to connect to)."""
    parsed = parse_ip(host)
    assert (None if parsed is None else str(parsed)) == literal
    if literal is not None:
        assert asyncio.run(addresses_of(host, Resolver(["127.0.0.1:9"]))) == [literal]  # never asked
        assert asyncio.run(Resolver(["127.0.0.1:9"]).resolve(host)) == [literal]


def test_the_dotted_quad_fast_path_reads_exactly_what_ipaddress_reads() -> None:
    """parse_ip reads dotted quads with inet_pton; over a corpus of near-misses (leading zeros, short
    and long forms, signs, spaces, non-ASCII digits, NUL, hex, overflow) it accepts exactly what
    ipaddress accepts, as the same address."""
    rng = random.Random(1234)
    pieces = ["0", "00", "01", "1", "9", "10", "99", "100", "255", "256", "999", "0x1", "+1", "-1", " 1", "1 ",
              "\u0661", "\uff11", "", "1\x00", "4294967296", "a"]
    corpus = {".".join(rng.choice(pieces) for _ in range(rng.choice((3, 4, 4, 4, 5)))) for _ in range(4000)}
    corpus |= {f"{a}.{b}.{c}.{d}" for a in (0, 1, 127, 255) for b in (0, 255) for c in (0, 9) for d in (0, 1, 255)}
    for text in sorted(corpus):
        try:
            expected: object = ip_address(text)
        except ValueError:
            expected = None
        assert parse_ip(text) == expected, repr(text)


@pytest.mark.parametrize(("host", "server_name", "names"), [
    ("shop.example", None, Names("shop.example", "shop.example")),
    ("shop.example.", None, Names("shop.example.", "shop.example.")),
    ("shop.example", "www.shop.example", Names("www.shop.example", "www.shop.example")),
    ("192.0.2.7", None, Names(None, None)),
    ("192.0.2.7", "shop.example", Names("shop.example", "shop.example")),
    ("2001:db8::1", None, Names(None, None)),
    ("[2001:db8::1]", None, Names(None, None)),
    ("fe80::1%eth0", None, Names(None, None)),
    ("[fe80::1%eth0]", "shop.example", Names("shop.example", "shop.example")),
    ("shop.example", "192.0.2.7", Names(None, "192.0.2.7")),
    ("shop.example", "[2001:db8::1]", Names(None, "[2001:db8::1]")),
])
def test_sni_and_verified_name_rule(host: str, server_name: str | None, names: Names) -> None:
    """The server_name wins; else the host, except an IP literal, which sends no SNI and has no name
    verified; a server_name that is an IP is verified against IP SANs but never sent as SNI."""
    assert target_names(host, server_name) == names


def test_a_zoned_literal_matches_an_ip_san_without_its_zone() -> None:
    """A certificate's IP SAN never has a zone: ``fe80::1%eth0`` is covered by ``IP:fe80::1``."""
    assert covers(["fe80::1"], "fe80::1%eth0") and covers(["fe80::1"], "[fe80::1]")
    assert not covers(["fe80::2"], "fe80::1%eth0")
    assert parse_ip("fe80::1%eth0") == ip_address("fe80::1%eth0")


def test_probe_all_probes_every_address_with_the_original_sni(
    challtestsrv: ChallTestSrv, nginx: Nginx, tmp_path: Path, caches: Caches
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

    results = asyncio.run(probe_all("shop.example", port, resolver=resolver, caches=caches, connect_timeout=2.0))

    assert [r.address for r in results] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    one, two, three = results
    assert one.presented is not None and two.presented is not None
    assert one.presented.server_name == two.presented.server_name == "shop.example"
    assert one.names == Names("shop.example", "shop.example")
    assert one.chain[0] == first.cert and one.leaf_fingerprint == first.fingerprint
    assert two.presented.chain_der[0] == second.cert.public_bytes(Encoding.DER)
    assert three.presented is None and three.chain == () and three.leaf_fingerprint is None
    assert three.error is not None and three.error.reason is FailureReason.REFUSED and three.error.port == port


def test_probe_all_without_an_address_of_the_family_is_dns(challtestsrv: ChallTestSrv, caches: Caches) -> None:
    """A name with only IPv4 addresses probed as ip6 has no address to attribute a failure to: dns."""
    challtestsrv.add_a("v4only.example", ["127.0.0.1"])
    with pytest.raises(ProbeError) as caught:
        asyncio.run(probe_all("v4only.example", 443, resolver=Resolver([challtestsrv.dns_address]), caches=caches,
                              ip_protocol="ip6"))
    assert caught.value.reason is FailureReason.DNS


def test_probe_all_on_an_ip_literal_sends_no_sni_unless_asked(nginx: Nginx, tmp_path: Path, caches: Caches) -> None:
    """An IP target (bare or bracketed) is probed once without SNI; an explicit server_name is honoured."""
    pki = Pki()
    default, named = pki.leaf(["default.example"]), pki.leaf(["shop.example"])
    port = free_port()
    for name, issued, is_default in (("default", default, True), ("shop", named, False)):
        paths = issued.write(tmp_path, name)
        nginx.add_site([f"{name}.example"], paths["fullchain"], paths["key"], [(LOOPBACK, port)], default=is_default)
    nginx.start()
    resolver = Resolver()
    [plain] = asyncio.run(probe_all(LOOPBACK, port, resolver=resolver, caches=caches))
    [sni] = asyncio.run(probe_all(LOOPBACK, port, resolver=resolver, caches=caches, server_name="shop.example"))
    assert plain.presented is not None and sni.presented is not None
    assert plain.presented.server_name is None and plain.names == Names(None, None)
    assert plain.chain[0] == default.cert
    assert sni.chain[0] == named.cert
