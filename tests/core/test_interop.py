"""certloop.tls.fetch against other TLS stacks: OpenSSL's s_server, GnuTLS's gnutls-serv, Java's JSSE.

Each server is real (Debian packages, the installed JDK) and runs on loopback. Every case is run
on both paths: the observe path (``observe=True``, the default) and a full OpenSSL handshake
(``observe=False``). The servers here require a client certificate, which certloop never sends:
such a server has presented its chain before it refuses us, and that chain is what certloop
reports. ``sni_name`` servers answer our SNI with a warning-level ``unrecognized_name`` alert, which
must neither fail the probe nor push the observe path into its OpenSSL fallback. nginx with
``ssl_verify_client on`` (which asks for a client certificate but refuses only at the HTTP level)
is covered on both paths by tests/core/test_tlsobserve.py::test_server_asking_for_a_client_certificate.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certloop.tls import PATHS, Presented, fetch
from stack.process import LOOPBACK
from tests.support.interop import compile_java, gnutls_server, java_server, openssl_server
from tests.support.pki import Issued, Pki

NAME = "shop.example"
PATH_IDS = {True: "observe", False: "openssl"}


def _der(issued: Issued) -> tuple[bytes, ...]:
    return (issued.cert.public_bytes(Encoding.DER), *(c.public_bytes(Encoding.DER) for c in issued.chain))


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """InteropServer.java compiled once for the module with the installed JDK."""
    return compile_java(tmp_path_factory.mktemp("jsse-classes"))


@pytest.fixture(scope="module")
def leaf() -> Issued:
    return Pki().leaf([NAME])


def _server(
    stack: str, workdir: Path, issued: Issued, java_classes: Path, *, protocol: str,
    require_client_cert: bool, sni_name: str | None = None,
) -> AbstractContextManager[int]:
    if stack == "openssl":
        return openssl_server(workdir, issued, protocol=protocol, require_client_cert=require_client_cert,
                              sni_name=sni_name)
    if stack == "gnutls":
        return gnutls_server(workdir, issued, protocol=protocol, require_client_cert=require_client_cert,
                             sni_name=sni_name)
    assert sni_name is None, "the JSSE server sends no unrecognized_name warning"
    return java_server(workdir, java_classes, issued, protocol=protocol, require_client_cert=require_client_cert)


def _probe(port: int, observe: bool, name: str = NAME) -> Presented:
    return asyncio.run(fetch(LOOPBACK, port, server_name=name, observe=observe, handshake_timeout=10))


@pytest.mark.parametrize("protocol", ["1.2", "1.3"])
@pytest.mark.parametrize("stack", ["openssl", "gnutls", "java"])
@pytest.mark.parametrize("require_client_cert", [False, True], ids=["plain", "client-cert-required"])
def test_chain_version_and_cipher_on_both_paths(
    stack: str, protocol: str, require_client_cert: bool, tmp_path: Path, leaf: Issued, java_classes: Path
) -> None:
    """Every stack, TLS 1.2 and 1.3, with and without a required client certificate: both paths
    report the chain as served, the version, a cipher, and the observe path needs no fallback."""
    with _server(stack, tmp_path, leaf, java_classes, protocol=protocol,
                 require_client_cert=require_client_cert) as port:
        for observe in (True, False):
            fallbacks = PATHS["fallback"]
            got = _probe(port, observe)
            where = f"{stack} TLS {protocol} on the {PATH_IDS[observe]} path"
            assert got.chain_der == _der(leaf), where
            assert got.tls_version == f"TLS {protocol}", where
            assert got.cipher, where
            assert got.path == PATH_IDS[observe], where
            assert PATHS["fallback"] == fallbacks, where


@pytest.mark.parametrize("stack", ["openssl", "gnutls"])
@pytest.mark.parametrize("require_client_cert", [False, True], ids=["plain", "client-cert-required"])
def test_warning_unrecognized_name_is_read_past(
    stack: str, require_client_cert: bool, tmp_path: Path, leaf: Issued, java_classes: Path
) -> None:
    """A TLS 1.2 server that answers our SNI with a warning-level unrecognized_name alert, then
    presents its default certificate: OK on both paths, and the observe path does not fall back
    (before: a fallback on every probe, and UNREACHABLE (handshake) with a client cert required)."""
    with _server(stack, tmp_path, leaf, java_classes, protocol="1.2", require_client_cert=require_client_cert,
                 sni_name="other.example") as port:
        for observe in (True, False):
            fallbacks = PATHS["fallback"]
            got = _probe(port, observe)
            where = f"{stack} on the {PATH_IDS[observe]} path"
            assert got.chain_der == _der(leaf), where
            assert got.tls_version == "TLS 1.2", where
            assert got.path == PATH_IDS[observe], where
            assert PATHS["fallback"] == fallbacks, where
