"""pebble and pebble-challtestsrv from stack/: DNS answers are scriptable, pebble's ACME directory
answers over HTTPS trusted by the minted CA bundle, and every start has a fresh issuing root."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rdatatype
import requests
from cryptography import x509

from stack.challtestsrv import ChallTestSrv
from stack.pebble import Pebble


def ask(server: ChallTestSrv, name: str, rdtype: str) -> list[str]:
    query = dns.message.make_query(name, rdtype)
    response = dns.query.udp(query, "127.0.0.1", port=server.dns_port, timeout=3)
    return sorted(item.to_text() for rrset in response.answer for item in rrset)


def test_challtestsrv_answers_scripted_a_and_txt_records(challtestsrv: ChallTestSrv) -> None:
    """add_a/add_txt/clear_txt change what the DNS port answers (queried with dnspython)."""
    challtestsrv.add_a("shop.example", ["127.0.0.2", "127.0.0.3"])
    challtestsrv.add_txt("_acme-challenge.shop.example", "token-value")

    assert ask(challtestsrv, "shop.example.", "A") == ["127.0.0.2", "127.0.0.3"]
    assert ask(challtestsrv, "_acme-challenge.shop.example.", "TXT") == ['"token-value"']

    challtestsrv.clear_txt("_acme-challenge.shop.example")
    assert ask(challtestsrv, "_acme-challenge.shop.example.", "TXT") == []


def test_challtestsrv_default_ipv4_answers_unknown_names(challtestsrv: ChallTestSrv) -> None:
    """Names without a record get the default IPv4 address, which set_default_ipv4 changes."""
    assert ask(challtestsrv, "anything.example.", "A") == ["127.0.0.1"]
    challtestsrv.set_default_ipv4("127.0.0.9")
    assert ask(challtestsrv, "anything.example.", "A") == ["127.0.0.9"]


def test_pebble_directory_answers_over_https_with_the_ca_bundle(pebble: Pebble) -> None:
    """The directory is reachable only when trusting ca_bundle_path, and lists newOrder."""
    response = requests.get(pebble.directory_url, verify=str(pebble.ca_bundle_path), timeout=5)
    assert response.status_code == 200
    assert "newOrder" in response.json()
    try:
        requests.get(pebble.directory_url, timeout=5)  # system trust store: pebble's CA is unknown
    except requests.exceptions.SSLError:
        pass
    else:
        raise AssertionError("pebble's HTTPS endpoint verified without the minted CA bundle")


def test_pebble_regenerates_its_root_on_restart(pebble: Pebble) -> None:
    """root_pem() is a CA certificate; after stop/start the directory answers again with a new root."""
    first = x509.load_pem_x509_certificate(pebble.root_pem())
    assert first.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    intermediate = x509.load_pem_x509_certificate(pebble.intermediate_pem())
    assert intermediate.issuer == first.subject
    assert pebble.trust_bundle_path.read_bytes() == pebble.root_pem()

    pebble.stop()
    assert not pebble.running
    pebble.start()

    second = x509.load_pem_x509_certificate(pebble.root_pem())
    assert second.serial_number != first.serial_number
    assert pebble.trust_bundle_path.read_bytes() == pebble.root_pem()
    assert "newOrder" in pebble.directory()
