"""STARTTLS negotiators against real servers, then the TLS chain behind them.

Real peers on loopback: aiosmtpd (SMTP), dovecot (IMAP, POP3), OpenLDAP slapd (LDAP StartTLS),
vsftpd (FTP AUTH TLS), a throwaway PostgreSQL cluster with ssl=on, the machine's PostgreSQL
(ssl off) and MariaDB. Protocol-faithful scripted servers (tests/support/servers.py ``scripted``
and ``tls_after``) cover what no real server here can be made to do: a MySQL that offers TLS
(the local MariaDB has none) and each protocol's refusal replies; each such test says so.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest
import uvloop
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from cryptography.hazmat.primitives.serialization import Encoding

from certloop.errors import FailureReason, ProbeError
from certloop.starttls import STARTTLS, ldap, mysql, postgres
from certloop.tls import Presented, fetch
from stack.process import LOOPBACK, free_port
from tests.support import servers
from tests.support.pki import Issued, Pki
from tests.support.servers import ThreadedServer, scripted, server_context, tls_after


@dataclass(frozen=True)
class Material:
    dir: Path
    leaf: Issued
    rsa_leaf: Issued
    fullchain: Path
    key: Path
    rsa_fullchain: Path
    rsa_key: Path

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        return (self.leaf.cert.public_bytes(Encoding.DER), *(c.public_bytes(Encoding.DER) for c in self.leaf.chain))


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    """One PKI for the module: an ECDSA leaf for most servers, an RSA leaf for vsftpd."""
    directory = tmp_path_factory.mktemp("starttls")
    pki = Pki()
    leaf = pki.leaf(["mail.example"])
    rsa_leaf = pki.leaf(["mail.example"], key_kind="rsa2048")
    ec, rsa = leaf.write(directory, "ec"), rsa_leaf.write(directory, "rsa")
    return Material(directory, leaf, rsa_leaf, ec["fullchain"], ec["key"], rsa["fullchain"], rsa["key"])


def probe(port: int, protocol: str, **kwargs: object) -> Presented:
    return asyncio.run(fetch(LOOPBACK, port, server_name="mail.example", starttls=protocol, **kwargs))  # type: ignore[arg-type]


def refusal(port: int, protocol: str) -> ProbeError:
    with pytest.raises(ProbeError) as caught:
        probe(port, protocol, handshake_timeout=5.0)
    assert caught.value.reason is FailureReason.STARTTLS
    return caught.value


def test_table_lists_every_protocol() -> None:
    """One table, one entry per protocol module."""
    assert set(STARTTLS) == {"smtp", "imap", "pop3", "ftp", "postgres", "mysql", "ldap"}


# -- SMTP: aiosmtpd ----------------------------------------------------------------------------


@pytest.fixture
def smtp_servers(material: Material) -> Iterator[tuple[int, int]]:
    """Two real aiosmtpd servers: one requiring STARTTLS, one without TLS at all."""
    with_tls = Controller(
        Sink(), hostname=LOOPBACK, port=free_port(), require_starttls=True,
        tls_context=server_context(material.leaf, material.dir, "smtp"),
    )
    without = Controller(Sink(), hostname=LOOPBACK, port=free_port())
    with_tls.start()
    without.start()
    try:
        yield with_tls.port, without.port
    finally:
        with_tls.stop()
        without.stop()


def test_smtp_starttls(material: Material, smtp_servers: tuple[int, int]) -> None:
    """SMTP: greeting, multi-line EHLO reply, STARTTLS 220, then the server's chain."""
    assert probe(smtp_servers[0], "smtp").chain_der == material.chain_der


def test_smtp_without_starttls(smtp_servers: tuple[int, int]) -> None:
    """An SMTP server whose EHLO lists no STARTTLS: the precise "does not offer" detail."""
    assert refusal(smtp_servers[1], "smtp").detail == "server does not offer STARTTLS"


# -- IMAP and POP3: dovecot --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dovecot(material: Material) -> Iterator[tuple[int, int]]:
    """A real dovecot: (imap port, pop3 port)."""
    with servers.dovecot(material.dir / "dovecot", material.fullchain, material.key) as ports:
        yield ports


def test_imap_starttls(material: Material, dovecot: tuple[int, int]) -> None:
    """IMAP against dovecot: capabilities from the greeting, STARTTLS tagged OK, the chain."""
    assert probe(dovecot[0], "imap").chain_der == material.chain_der


def test_pop3_stls(material: Material, dovecot: tuple[int, int]) -> None:
    """POP3 against dovecot: CAPA lists STLS, STLS +OK, the chain."""
    assert probe(dovecot[1], "pop3").chain_der == material.chain_der


def test_starttls_under_uvloop(
    material: Material, smtp_servers: tuple[int, int], dovecot: tuple[int, int]
) -> None:
    """The plaintext preamble over raw socket calls, then TLS on the same socket, works on uvloop."""

    async def both() -> list[Presented]:
        return list(await asyncio.gather(
            fetch(LOOPBACK, smtp_servers[0], server_name="mail.example", starttls="smtp"),
            fetch(LOOPBACK, dovecot[0], server_name="mail.example", starttls="imap"),
            fetch(LOOPBACK, dovecot[1], server_name="mail.example", starttls="pop3"),
        ))

    assert [got.chain_der for got in uvloop.run(both())] == [material.chain_der] * 3


# -- LDAP: slapd, FTP: vsftpd ------------------------------------------------------------------


def test_ldap_starttls_against_slapd(material: Material) -> None:
    """LDAP against OpenLDAP slapd: the BER StartTLS extended request, resultCode success, the chain."""
    with servers.slapd(material.dir / "slapd", material.fullchain, material.key) as port:
        assert probe(port, "ldap").chain_der == material.chain_der


def test_ftp_auth_tls_against_vsftpd(material: Material) -> None:
    """FTP against vsftpd: greeting 220, AUTH TLS answered 234, the (RSA) chain."""
    with servers.vsftpd(material.dir / "vsftpd", material.rsa_fullchain, material.rsa_key) as port:
        got = probe(port, "ftp")
    assert got.chain_der[0] == material.rsa_leaf.cert.public_bytes(Encoding.DER)


# -- PostgreSQL ----------------------------------------------------------------------------------


def test_postgres_sslrequest(material: Material) -> None:
    """A throwaway PostgreSQL cluster with ssl=on answers the SSLRequest with S, then TLS."""
    with servers.postgres_with_ssl(material.leaf) as port:
        assert probe(port, "postgres").chain_der == material.chain_der


def test_postgres_without_ssl() -> None:
    """The machine's PostgreSQL on 5432 runs with ssl=off: SSLRequest is answered N."""
    err = refusal(5432, "postgres")
    assert err.detail == "server does not offer TLS (SSLRequest answered N)"


# -- MySQL / MariaDB -----------------------------------------------------------------------------


def _mariadb_has_tls() -> bool:
    with pymysql.connect(host=LOOPBACK, port=3306, user="root") as conn, conn.cursor() as cursor:
        cursor.execute("SHOW VARIABLES LIKE 'have_ssl'")
        row = cursor.fetchone()
    return bool(row and row[1] == "YES")


def test_mariadb_real_server() -> None:
    """The machine's MariaDB: without TLS the exact "does not offer TLS" detail, with TLS a chain."""
    if _mariadb_has_tls():
        assert probe(3306, "mysql").chain_der
    else:
        err = refusal(3306, "mysql")
        assert err.detail == "server does not offer TLS (no CLIENT_SSL capability)"


def mysql_greeting(capabilities: int) -> bytes:
    """A protocol-10 initial handshake packet as MariaDB sends it (sequence 0)."""
    payload = (
        b"\x0a" + b"10.11.6-MariaDB-fake\x00" + struct.pack("<I", 7) + b"12345678" + b"\x00"
        + struct.pack("<H", capabilities & 0xFFFF) + b"\x2d" + struct.pack("<H", 2)
        + struct.pack("<H", capabilities >> 16) + b"\x15" + b"\x00" * 10 + b"123456789012\x00"
        + b"mysql_native_password\x00"
    )
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def test_mysql_ssl_request_with_a_protocol_faithful_server(material: Material) -> None:
    """A protocol-faithful fake MySQL (no TLS-enabled MySQL runs here): it greets with CLIENT_SSL,
    accepts only a 32-byte SSL request packet with sequence 1 and the CLIENT_SSL flag, then TLS."""
    caps = mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_SSL | mysql.CLIENT_SECURE_CONNECTION | 0x80000
    flags = mysql.CLIENT_LONG_PASSWORD | mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_SSL | mysql.CLIENT_SECURE_CONNECTION
    ssl_request_head = b"\x20\x00\x00\x01" + struct.pack("<I", flags)
    handler = tls_after(
        server_context(material.leaf, material.dir, "mysql"), mysql_greeting(caps), 36, expect=ssl_request_head
    )
    with ThreadedServer(handler) as srv:
        assert probe(srv.port, "mysql").chain_der == material.chain_der


# -- refusals: protocol-faithful scripted servers ----------------------------------------------


ERR_1130 = b"\xff" + struct.pack("<H", 1130) + b"Host '127.0.0.1' is not allowed to connect to this MariaDB server"


def _ldap_response(code: int, diagnostic: bytes) -> bytes:
    body = b"\x0a\x01" + bytes([code]) + b"\x04\x00" + b"\x04" + bytes([len(diagnostic)]) + diagnostic
    op = b"\x78" + bytes([len(body)]) + body
    message = b"\x02\x01\x01" + op
    return b"\x30" + bytes([len(message)]) + message


REFUSALS = {
    "smtp-454": (
        "smtp",
        scripted(b"220 mx ESMTP\r\n", None, b"250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n", None,
                 b"454 4.7.0 TLS not available due to temporary reason\r\n"),
        "unexpected reply 454 4.7.0 TLS not available due to temporary reason to STARTTLS",
    ),
    "imap-no-capability": (
        "imap",
        scripted(b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] ready\r\n"),
        "server does not offer STARTTLS",
    ),
    "imap-capability-command": (
        "imap",
        scripted(b"* OK ready\r\n", None, b"* CAPABILITY IMAP4rev1 IDLE\r\nC1 OK done\r\n"),
        "server does not offer STARTTLS",
    ),
    "imap-preauth": (
        "imap",
        scripted(b"* PREAUTH welcome back\r\n"),
        "server greeted with PREAUTH: STARTTLS is not allowed once authenticated",
    ),
    "pop3-no-stls": (
        "pop3",
        scripted(b"+OK POP3 ready\r\n", None, b"+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
        "server does not offer STARTTLS (no STLS in CAPA)",
    ),
    "ftp-502": (
        "ftp",
        scripted(b"220-Welcome\r\n free text line\r\n220 ready\r\n", None, b"502 Command not implemented.\r\n"),
        "server does not offer AUTH TLS (reply 502 Command not implemented.)",
    ),
    "ldap-protocol-error": (
        "ldap",
        scripted(None, _ldap_response(2, b"unsupported extended operation")),
        "server does not offer STARTTLS (resultCode 2 (protocolError): unsupported extended operation)",
    ),
    "ldap-unavailable": (
        "ldap",
        scripted(None, _ldap_response(52, b"Could not initialize TLS")),
        "StartTLS refused: resultCode 52 (unavailable): Could not initialize TLS",
    ),
    "mysql-host-blocked": (
        "mysql",
        scripted(len(ERR_1130).to_bytes(3, "little") + b"\x00" + ERR_1130),
        "server refused the connection: error 1130 Host '127.0.0.1' is not allowed to connect to this MariaDB server",
    ),
    "postgres-error": (
        "postgres",
        scripted(None, b"E"),
        "unexpected reply 'E' to SSLRequest",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_have_precise_details(case: str) -> None:
    """Protocol-faithful scripted servers (each protocol's real refusal bytes, since the real
    servers here cannot be made to refuse on demand): every refusal is starttls with a precise detail."""
    protocol, handler, detail = REFUSALS[case]
    with ThreadedServer(handler) as srv:
        assert refusal(srv.port, protocol).detail == detail


def test_ldap_request_is_the_rfc4511_encoding() -> None:
    """The StartTLS ExtendedRequest bytes: messageID 1, [APPLICATION 23], requestName [0] OID."""
    assert bytes.fromhex("301d02010177188016") + b"1.3.6.1.4.1.1466.20037" == ldap.START_TLS_REQUEST


def test_postgres_sslrequest_bytes() -> None:
    """The SSLRequest is length 8 and code 80877103 (1234 << 16 | 5679), big-endian."""
    assert bytes.fromhex("0000000804d2162f") == postgres.SSL_REQUEST
