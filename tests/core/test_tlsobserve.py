"""The observation-only handshake (certloop.tlsobserve) against real servers, differentially.

For every server in the matrix the fast path's chain, version and cipher must equal what the
full OpenSSL handshake (``fetch(..., observe=False)``) reports for the same server, and
``Presented.path`` says which path produced the answer: ``observe``, or ``openssl`` after a
fallback (HelloRetryRequest, a server alert, ...). Peers: one real nginx with a site per port
(protocols, leaf key types, curves, cipher suites, a big chain), ``openssl s_server`` (TLS 1.0,
1.2, 1.3), dovecot and aiosmtpd behind STARTTLS, and in-process OpenSSL server objects driven
through memory BIOs for the byte-level tests of the pure core.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from cryptography.hazmat.primitives.serialization import Encoding

from certloop.errors import FailureReason, ObserveError, ProbeError, Refused, Unsupported
from certloop.tls import PATHS, Presented, fetch
from certloop.tlshandshake import observation_offer
from certloop.tlsobserve import SHARE_USES, Observed, Observer
from stack.nginx import Nginx, Site
from stack.process import LOOPBACK, Process, free_port, port_open, require_binary, wait_until
from tests.support import servers
from tests.support.pki import Issued, Pki
from tests.support.servers import ThreadedServer, scripted, server_context, tls_after

NAME = "shop.example"


@dataclass(frozen=True)
class TunedSite(Site):
    """An nginx server block with extra TLS directives (protocols, curves, ciphers)."""

    directives: tuple[str, ...] = ()

    def render(self) -> str:
        extra = "".join(f"        {line};\n" for line in self.directives)
        return super().render().replace("        location / {", extra + "        location / {", 1)


@dataclass(frozen=True)
class Case:
    leaf: str
    directives: tuple[str, ...]
    path: str = "observe"
    chain_length: int = 1


CASES: dict[str, Case] = {
    "tls12-ec256": Case("ec256", ("ssl_protocols TLSv1.2",)),
    "tls13-ec256": Case("ec256", ("ssl_protocols TLSv1.3",)),
    "both-ec256": Case("ec256", ("ssl_protocols TLSv1.2 TLSv1.3",)),
    "tls13-ec384": Case("ec384", ("ssl_protocols TLSv1.3",)),
    "tls12-ec384": Case("ec384", ("ssl_protocols TLSv1.2",)),
    "tls12-rsa2048": Case("rsa2048", ("ssl_protocols TLSv1.2",)),
    "tls13-rsa2048": Case("rsa2048", ("ssl_protocols TLSv1.3",)),
    "both-rsa4096": Case("rsa4096", ("ssl_protocols TLSv1.2 TLSv1.3",)),
    "x25519": Case("ec256", ("ssl_protocols TLSv1.3", "ssl_ecdh_curve X25519")),
    "p256": Case("ec256", ("ssl_protocols TLSv1.3", "ssl_ecdh_curve prime256v1")),
    "p384-hrr": Case("ec256", ("ssl_protocols TLSv1.3", "ssl_ecdh_curve secp384r1"), path="openssl"),
    "p384-tls12": Case("ec256", ("ssl_protocols TLSv1.2", "ssl_ecdh_curve secp384r1")),
    "chacha13": Case("ec256", ("ssl_protocols TLSv1.3", "ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256")),
    "aes128-13": Case("ec256", ("ssl_protocols TLSv1.3", "ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256")),
    "chacha12": Case("rsa2048", ("ssl_protocols TLSv1.2", "ssl_ciphers ECDHE-RSA-CHACHA20-POLY1305")),
    "cbc12": Case("rsa2048", ("ssl_protocols TLSv1.2", "ssl_ciphers ECDHE-RSA-AES128-SHA")),
    "rsa-kx12": Case("rsa2048", ("ssl_protocols TLSv1.2", "ssl_ciphers AES128-GCM-SHA256")),
    "server-order12": Case(
        "ec256", ("ssl_protocols TLSv1.2", "ssl_ciphers ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384",
                  "ssl_prefer_server_ciphers on"),
    ),
    "big-chain13": Case("ec256", ("ssl_protocols TLSv1.3",), chain_length=40),
    "big-chain12": Case("ec256", ("ssl_protocols TLSv1.2",), chain_length=40),
}
MTLS: dict[str, tuple[str, ...]] = {  # client certificate required: {ca} is the test root's path
    "mtls12": ("ssl_protocols TLSv1.2", 'ssl_client_certificate "{ca}"', "ssl_verify_client on"),
    "mtls13": ("ssl_protocols TLSv1.3", 'ssl_client_certificate "{ca}"', "ssl_verify_client on"),
}


@dataclass(frozen=True)
class Matrix:
    ports: dict[str, int]
    chains: dict[str, tuple[bytes, ...]]
    log: Path


def _der(issued: Issued) -> tuple[bytes, ...]:
    return (issued.cert.public_bytes(Encoding.DER), *(c.public_bytes(Encoding.DER) for c in issued.chain))


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """One real nginx, one site per case, each on its own port (so its protocol/curve settings
    apply: OpenSSL picks those before SNI)."""
    directory = tmp_path_factory.mktemp("observe")
    pki = Pki()
    web = Nginx(directory / "nginx")
    log = directory / "site-info.log"
    ports: dict[str, int] = {}
    chains: dict[str, tuple[bytes, ...]] = {}
    ca = pki.write_root(directory / "root.pem")
    cases = {**CASES, **{name: Case("ec256", tuple(d.format(ca=ca) for d in lines)) for name, lines in MTLS.items()}}
    for name, case in cases.items():
        leaf = pki.leaf([NAME], key_kind=case.leaf)
        if case.chain_length > 1:  # the same intermediate repeated: a chain of ~20 KB over many records
            leaf = Issued(leaf.cert, leaf.key, [pki.intermediate.cert] * case.chain_length)
        paths = leaf.write(directory, name)
        ports[name] = free_port()
        chains[name] = _der(leaf)
        directives = case.directives + ((f'error_log "{log}" info',) if name == "both-ec256" else ())
        web.sites.append(TunedSite(
            server_names=(NAME,), listen=((LOOPBACK, ports[name]),), cert_path=paths["fullchain"],
            key_path=paths["key"], default=True, body=name, directives=directives,
        ))
    web.start()
    try:
        yield Matrix(ports, chains, log)
    finally:
        web.stop()


def both_paths(port: int, **kwargs: object) -> tuple[Presented, Presented]:
    async def run() -> tuple[Presented, Presented]:
        fast = await fetch(LOOPBACK, port, server_name=NAME, **kwargs)  # type: ignore[arg-type]
        full = await fetch(LOOPBACK, port, server_name=NAME, observe=False, **kwargs)  # type: ignore[arg-type]
        return fast, full

    return asyncio.run(run())


def assert_same(fast: Presented, full: Presented) -> None:
    assert full.path == "openssl"
    assert (fast.chain_der, fast.tls_version, fast.cipher) == (full.chain_der, full.tls_version, full.cipher)


@pytest.mark.parametrize("name", list(CASES))
def test_fast_path_equals_openssl_against_nginx(matrix: Matrix, name: str) -> None:
    """Against nginx with this protocol/key/curve/cipher setting, the fast path reports exactly
    the chain, version and cipher of a full OpenSSL handshake; HelloRetryRequest (a curve we
    sent no key share for) falls back to OpenSSL and still gives the right answer."""
    before = PATHS["fallback"]
    fast, full = both_paths(matrix.ports[name])
    assert_same(fast, full)
    assert fast.chain_der == matrix.chains[name]
    assert fast.path == CASES[name].path
    assert PATHS["fallback"] - before == (1 if CASES[name].path == "openssl" else 0)


@pytest.mark.parametrize("name", list(MTLS))
def test_server_asking_for_a_client_certificate(matrix: Matrix, name: str) -> None:
    """nginx with ``ssl_verify_client on`` asks for a client certificate (after presenting its
    own in TLS 1.2, before in 1.3) and refuses the missing one only at the HTTP level: both
    paths see the same chain, the fast path skipping the CertificateRequest."""
    fast, full = both_paths(matrix.ports[name])
    assert_same(fast, full)
    assert fast.path == "observe"
    assert fast.chain_der == matrix.chains[name]


def test_versions_and_ciphers_are_reported_like_openssl(matrix: Matrix) -> None:
    """The names are OpenSSL's: "TLS 1.3"/"TLS 1.2" and cipher names like TLS_CHACHA20_POLY1305_SHA256."""
    seen = {name: both_paths(matrix.ports[name])[0] for name in ("tls12-ec256", "chacha13", "cbc12", "rsa-kx12")}
    assert seen["tls12-ec256"].tls_version == "TLS 1.2"
    assert seen["chacha13"].tls_version == "TLS 1.3"
    assert seen["chacha13"].cipher == "TLS_CHACHA20_POLY1305_SHA256"
    assert seen["cbc12"].cipher == "ECDHE-RSA-AES128-SHA"
    assert seen["rsa-kx12"].cipher == "AES128-GCM-SHA256"


def test_nginx_logs_nothing_above_info_for_an_observation(matrix: Matrix) -> None:
    """The fast path closes after the Certificate message with a close_notify alert (encrypted
    with the client handshake key in TLS 1.3). nginx notes that at info level only ("peer closed
    connection in SSL handshake" / an alert); nothing reaches its default error level."""
    port = matrix.ports["both-ec256"]
    asyncio.run(fetch(LOOPBACK, port, server_name=NAME))
    # nginx writes the line when its worker has handled the close
    text = wait_until(lambda: matrix.log.exists() and "[info]" in (logged := matrix.log.read_text()) and logged, 5,
                      "nginx's info line about the observed connection")
    lines = [line for line in text.splitlines() if "SSL" in line or "closed" in line]
    assert lines, "nginx logged nothing about the observed connection"
    assert all("[info]" in line for line in lines), lines


# -- openssl s_server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s_server_leaf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Issued, dict[str, Path]]:
    directory = tmp_path_factory.mktemp("s_server")
    leaf = Pki().leaf([NAME], key_kind="rsa2048")
    return leaf, leaf.write(directory, "leaf")


@pytest.mark.parametrize(
    ("flags", "version"),
    [
        (("-tls1", "-cipher", "DEFAULT@SECLEVEL=0"), "TLS 1.0"),
        (("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"), "TLS 1.1"),
        (("-tls1_2",), "TLS 1.2"),
        (("-tls1_3",), "TLS 1.3"),
    ],
)
def test_fast_path_equals_openssl_against_s_server(
    s_server_leaf: tuple[Issued, dict[str, Path]], tmp_path: Path, flags: tuple[str, ...], version: str
) -> None:
    """``openssl s_server`` restricted to one protocol version: both paths agree, and legacy
    TLS 1.0/1.1 servers are read by the fast path too (their Certificate is plaintext)."""
    leaf, paths = s_server_leaf
    port = free_port()
    argv = [require_binary("openssl", "openssl"), "s_server", "-accept", f"{LOOPBACK}:{port}", "-quiet",
            "-cert", str(paths["cert"]), "-key", str(paths["key"]), "-cert_chain", str(paths["chain"]),
            "-no_ticket", *flags]
    server = Process(argv, name="s_server", log_path=tmp_path / "s_server.log").start()
    try:
        server.wait_until(lambda: port_open(LOOPBACK, port), 10, "s_server listening")
        fast, full = both_paths(port)
    finally:
        server.stop()
    assert_same(fast, full)
    assert fast.path == "observe"
    assert fast.tls_version == version
    assert fast.chain_der == _der(leaf)


def test_server_refusing_clients_without_certificate(
    s_server_leaf: tuple[Issued, dict[str, Path]], tmp_path: Path
) -> None:
    """``openssl s_server -Verify 1 -tls1_2`` aborts the handshake without a client certificate, after
    it presented its chain: both paths report that chain (what the server presents is what we
    monitor); the full OpenSSL handshake takes it from the abandoned handshake."""
    leaf, paths = s_server_leaf
    port = free_port()
    argv = [require_binary("openssl", "openssl"), "s_server", "-accept", f"{LOOPBACK}:{port}", "-quiet",
            "-cert", str(paths["cert"]), "-key", str(paths["key"]), "-cert_chain", str(paths["chain"]),
            "-Verify", "1", "-CAfile", str(paths["chain"]), "-tls1_2"]
    server = Process(argv, name="s_server", log_path=tmp_path / "s_server.log").start()
    try:
        server.wait_until(lambda: port_open(LOOPBACK, port), 10, "s_server listening")
        fast = asyncio.run(fetch(LOOPBACK, port, server_name=NAME))
        full = asyncio.run(fetch(LOOPBACK, port, server_name=NAME, observe=False))
    finally:
        server.stop()
    assert (fast.path, fast.chain_der) == ("observe", _der(leaf))
    assert (full.path, full.chain_der) == ("openssl", _der(leaf))
    assert fast.tls_version == full.tls_version == "TLS 1.2"
    assert fast.cipher == full.cipher


# -- STARTTLS -----------------------------------------------------------------------------------


def test_starttls_against_aiosmtpd_and_dovecot(tmp_path: Path) -> None:
    """STARTTLS negotiates over plaintext first, then the fast path reads the chain on the same
    socket: aiosmtpd (SMTP) and dovecot (IMAP, POP3) give what the OpenSSL path gives."""
    leaf = Pki().leaf([NAME])
    paths = leaf.write(tmp_path, "mail")
    smtp = Controller(Sink(), hostname=LOOPBACK, port=free_port(), require_starttls=True,
                      tls_context=server_context(leaf, tmp_path, "smtp"))
    smtp.start()
    try:
        with servers.dovecot(tmp_path / "dovecot", paths["fullchain"], paths["key"]) as (imap, pop3):
            results = [both_paths(port, starttls=proto) for port, proto in
                       ((smtp.port, "smtp"), (imap, "imap"), (pop3, "pop3"))]
    finally:
        smtp.stop()
    for fast, full in results:
        assert_same(fast, full)
        assert fast.path == "observe"
        assert fast.chain_der == _der(leaf)


def test_starttls_fallback_negotiates_again_on_a_new_connection(tmp_path: Path) -> None:
    """A STARTTLS server that only accepts P-384 in TLS 1.3 answers with HelloRetryRequest: the
    fast path gives up, and the fallback opens a new connection, negotiates STARTTLS again and
    completes the handshake with OpenSSL."""
    leaf = Pki().leaf([NAME])
    ctx = server_context(leaf, tmp_path, "hrr")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ecdh_curve("secp384r1")
    smtp = tls_after(ctx, b"220 mail ESMTP\r\n", None, b"250-mail\r\n250 STARTTLS\r\n", None, b"220 go ahead\r\n")
    with ThreadedServer(smtp) as srv:
        presented = asyncio.run(fetch(LOOPBACK, srv.port, server_name=NAME, starttls="smtp"))
        accepted = srv.accepted
    assert presented.path == "openssl"
    assert presented.chain_der == _der(leaf)
    assert accepted == 2


# -- failures keep their reasons ----------------------------------------------------------------


def test_server_alert_falls_back_and_reports_openssl_reason() -> None:
    """A server answering every ClientHello with a fatal handshake_failure alert: the fast path
    does not judge (our hello differs from OpenSSL's), the OpenSSL fallback does: reason
    handshake, with OpenSSL's alert name in the detail."""
    alert = b"\x15\x03\x03\x00\x02\x02\x28"
    with ThreadedServer(scripted(None, alert)) as srv:
        with pytest.raises(ProbeError) as caught:
            asyncio.run(fetch(LOOPBACK, srv.port, server_name=NAME))
        accepted = srv.accepted
    assert caught.value.reason is FailureReason.HANDSHAKE
    assert "ALERT_HANDSHAKE_FAILURE" in caught.value.detail
    assert accepted == 2


def test_garbage_is_judged_by_the_fast_path_alone() -> None:
    """Bytes that are not TLS records are final on the fast path (OpenSSL says the same):
    reason handshake, WRONG_VERSION_NUMBER in the detail, one connection only."""
    with ThreadedServer(servers.garbage) as srv:
        with pytest.raises(ProbeError) as caught:
            asyncio.run(fetch(LOOPBACK, srv.port, server_name=NAME))
        accepted = srv.accepted
    assert caught.value.reason is FailureReason.HANDSHAKE
    assert "WRONG_VERSION_NUMBER" in caught.value.detail
    assert accepted == 1


# -- the pure core, byte by byte, against in-process OpenSSL servers ------------------------------


@dataclass
class MemoryServer:
    """An in-process OpenSSL server connection driven through memory BIOs."""

    tls: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO


def _server(issued: Issued, tmp_path: Path, **settings: object) -> MemoryServer:
    ctx = server_context(issued, tmp_path, "core")
    for key, value in settings.items():
        if key == "curve":
            ctx.set_ecdh_curve(str(value))
        else:
            setattr(ctx, key, value)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    return MemoryServer(ctx.wrap_bio(incoming, outgoing, server_side=True), incoming, outgoing)


def _flight(server: MemoryServer, hello: bytes) -> bytes:
    """The server's whole first flight in answer to ``hello``."""
    server.incoming.write(hello)
    with suppress(ssl.SSLWantReadError):
        server.tls.do_handshake()
    return bytes(server.outgoing.read())


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_flight_split_into_single_bytes(tmp_path: Path, version: ssl.TLSVersion) -> None:
    """Records and handshake messages reassemble however the bytes arrive: the server's flight
    fed one byte at a time yields the chain exactly once, at the end of the Certificate."""
    issued = Pki().leaf([NAME])
    observer = Observer(observation_offer(), NAME)
    flight = _flight(_server(issued, tmp_path, maximum_version=version), observer.client_hello)
    fed, seen = 0, None
    while seen is None and fed < len(flight):
        seen = observer.feed(flight[fed:fed + 1])
        fed += 1
    assert isinstance(seen, Observed)
    assert seen.chain_der == _der(issued)
    assert seen.tls_version == ("TLS 1.3" if version is ssl.TLSVersion.TLSv1_3 else "TLS 1.2")
    # the chain is complete exactly when the Certificate message ends: later messages are unread
    assert fed < len(flight)


def _key_share(hello: bytes) -> bytes:
    marker = b"\x00\x1d\x00\x20"  # the X25519 entry: group, 32-byte key
    start = hello.index(marker) + len(marker)
    return hello[start:start + 32]


def test_hello_is_fresh_and_sends_sni_only_for_names() -> None:
    """Each ClientHello has its own client_random and session id; key pairs are renewed after
    SHARE_USES hellos; the SNI extension carries the name (none without one); the hello is
    padded out of the 256..511-byte range some load balancers mishandle."""
    hellos = [Observer(observation_offer(), NAME if i % 2 else None).client_hello for i in range(SHARE_USES + 1)]
    randoms = {h[11:43] for h in hellos} | {h[44:76] for h in hellos}
    assert len(randoms) == 2 * len(hellos)
    assert len({_key_share(h) for h in hellos}) == 2
    assert all((NAME.encode() in h) == bool(i % 2) for i, h in enumerate(hellos))
    assert all(h[43] == 32 and not 256 <= len(h) - 5 < 512 for h in hellos)


def test_hello_retry_request_is_unsupported(tmp_path: Path) -> None:
    """A TLS 1.3 server that wants a P-384 share answers with HelloRetryRequest: Unsupported."""
    observer = Observer(observation_offer(), NAME)
    server = _server(Pki().leaf([NAME]), tmp_path, minimum_version=ssl.TLSVersion.TLSv1_3, curve="secp384r1")
    with pytest.raises(Unsupported, match="HelloRetryRequest"):
        observer.feed(_flight(server, observer.client_hello))


def test_oversized_certificate_message_is_refused(tmp_path: Path) -> None:
    """A Certificate message over OpenSSL's 100 KiB max_cert_list is refused as too large as
    soon as its header is read, before the rest of it is buffered."""
    pki = Pki()
    leaf = pki.leaf([NAME])
    issued = Issued(leaf.cert, leaf.key, [pki.intermediate.cert] * 300)
    observer = Observer(observation_offer(), NAME)
    flight = _flight(_server(issued, tmp_path, maximum_version=ssl.TLSVersion.TLSv1_2), observer.client_hello)
    with pytest.raises(Refused) as caught:
        observer.feed(flight[:40_000])
    assert caught.value.too_large


def test_close_alert_is_plaintext_before_keys_and_encrypted_after(tmp_path: Path) -> None:
    """TLS 1.2: a plaintext close_notify record; TLS 1.3: an application_data record (the alert
    encrypted with the client handshake traffic key)."""
    issued = Pki().leaf([NAME])
    kinds = []
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        observer = Observer(observation_offer(), NAME)
        observer.feed(_flight(_server(issued, tmp_path, maximum_version=version), observer.client_hello))
        kinds.append(observer.close_alert()[0])
    assert kinds == [21, 23]


def test_socket_pairs_are_not_left_open(matrix: Matrix) -> None:
    """Many fast-path probes in one loop leave no sockets behind (each is closed after the
    Certificate message)."""
    before = len(list(Path("/proc/self/fd").iterdir()))

    async def many() -> None:
        await asyncio.gather(*(fetch(LOOPBACK, matrix.ports["tls13-ec256"], server_name=NAME) for _ in range(50)))

    asyncio.run(many())
    assert len(list(Path("/proc/self/fd").iterdir())) <= before + 1


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_corrupted_flights_only_end_in_observe_errors(tmp_path: Path, version: ssl.TLSVersion) -> None:
    """A real server flight with single bytes flipped or cut short, at every 7th offset: the
    parser returns an observation, waits for more, or raises ObserveError (fallback or final),
    and never any other exception, whatever the corruption."""
    issued = Pki().leaf([NAME])
    outcomes: set[str] = set()
    for offset in range(0, 1200, 7):
        observer = Observer(observation_offer(), NAME)
        flight = bytearray(_flight(_server(issued, tmp_path, maximum_version=version), observer.client_hello))
        if offset >= len(flight):
            break
        flight[offset] ^= 0xA5
        try:
            seen = observer.feed(bytes(flight))
        except ObserveError as exc:
            outcomes.add(type(exc).__name__)
        else:
            outcomes.add("observed" if seen is not None else "waiting")
    assert "Unsupported" in outcomes


def _alert(level: int, description: int) -> bytes:
    return bytes((21, 3, 3, 0, 2, level, description))


def test_warning_alerts_before_tls13_are_read_past_and_bounded() -> None:
    """A warning-level alert (unrecognized_name, 112) before the ServerHello does not end the
    observation (OpenSSL reads on; before, the fast path fell back on every probe); a fatal alert,
    a close_notify or a fifth warning in a row does (the OpenSSL path then decides)."""
    observer = Observer(observation_offer(), NAME)
    assert observer.feed(_alert(1, 112) * 4) is None
    with pytest.raises(Unsupported, match="unrecognized_name"):
        observer.feed(_alert(1, 112))
    with pytest.raises(Unsupported, match="unrecognized_name"):
        Observer(observation_offer(), NAME).feed(_alert(2, 112))
    with pytest.raises(Unsupported, match="close_notify"):
        Observer(observation_offer(), NAME).feed(_alert(1, 0))
