"""pebble and pebble-challtestsrv from stack/: DNS answers are scriptable, pebble's ACME directory
answers over HTTPS trusted by the minted CA bundle, and every start has a fresh issuing root."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import dns.message
import dns.query
import josepy as jose
import requests
from acme import challenges, client, crypto_util, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

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


def test_pebble_honours_a_short_certificate_lifetime(challtestsrv: ChallTestSrv, tmp_path: Path) -> None:
    """certificate_validity=300 makes pebble issue 5-minute certificates (PEBBLE_VA_ALWAYS_VALID skips
    challenges here; real validation is the renewer's tests' business). The chain ends at root_pem()."""
    pebble = Pebble(tmp_path / "pebble", challtestsrv.dns_address, always_valid=True, certificate_validity=300)
    pebble.start()
    try:
        account_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        network = client.ClientNetwork(account_key, alg=jose.ES256, user_agent="certloop-tests",
                                       verify_ssl=str(pebble.ca_bundle_path))
        acme = client.ClientV2(client.ClientV2.get_directory(pebble.directory_url, network), network)
        acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        order = acme.new_order(crypto_util.make_csr(key_pem, ["shop.example"]))
        for authorization in order.authorizations:
            # pebble lists challenges in random order; take http-01 (this acme has no tls-alpn-01 type)
            [challenge] = [c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)]
            acme.answer_challenge(challenge, challenge.response(account_key))
        # acme's deadline is compared with its own naive datetime.now(); an aware one would raise.
        order = acme.poll_and_finalize(order, deadline=datetime.now() + timedelta(seconds=30))
    finally:
        root = pebble.root_pem() if pebble.running else b""
        pebble.stop()
    chain = x509.load_pem_x509_certificates(order.fullchain_pem.encode())
    lifetime = chain[0].not_valid_after_utc - chain[0].not_valid_before_utc
    assert timedelta(minutes=4) < lifetime <= timedelta(minutes=5)
    assert chain[-1].issuer == x509.load_pem_x509_certificate(root).subject
