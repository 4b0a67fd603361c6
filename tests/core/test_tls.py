"""certloop.tls.fetch against real TLS servers: the presented chain, invalid or not, with SNI.

nginx (Debian, started per module on loopback) serves three names on one port; stdlib ``ssl``
servers cover what nginx cannot be made to do here (a TLS 1.0-only legacy peer, an anonymous
suite without any certificate, IPv6 on ``::1``). Every fetch test runs under stock asyncio and
under uvloop, the two loops the exporter supports.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import ssl
import warnings
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certloop.errors import FailureReason, ProbeError
from certloop.tls import Presented, fetch
from certloop.tlshandshake import observation_context
from stack.nginx import Nginx
from stack.process import LOOPBACK, free_port
from tests.support.pki import Issued, Pki
from tests.support.servers import ThreadedServer, ipv6_loopback_available, server_context, tls_after

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


def der(issued: Issued) -> tuple[bytes, ...]:
    return (issued.cert.public_bytes(Encoding.DER), *(c.public_bytes(Encoding.DER) for c in issued.chain))


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run a coroutine to completion on a fresh event loop of the parametrised kind."""
    return asyncio.run if request.param == "asyncio" else uvloop.run


@dataclass(frozen=True)
class Site:
    port: int
    valid: Issued
    self_signed: Issued
    expired: Issued
    rsa: Issued


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One real nginx port with four SNI names: valid ECDSA (default), self-signed, expired, RSA."""
    tmp = tmp_path_factory.mktemp("tls-nginx")
    pki = Pki()
    valid = pki.leaf(["shop.example"])
    self_signed = pki.self_signed(["self.example"])
    expired = pki.leaf(
        ["old.example"], not_before=pki.now - timedelta(days=60), not_after=pki.now - timedelta(days=2)
    )
    rsa = pki.leaf(["rsa.example"], key_kind="rsa2048")
    port = free_port()
    web = Nginx(tmp / "nginx")
    for name, issued, default in (
        ("shop", valid, True), ("self", self_signed, False), ("old", expired, False), ("rsa", rsa, False)
    ):
        paths = issued.write(tmp / "certs", name)
        web.add_site(
            [f"{name}.example"], paths["fullchain"], paths["key"], [(LOOPBACK, port)], default=default
        )
    web.start()
    try:
        yield Site(port, valid, self_signed, expired, rsa)
    finally:
        web.stop()


def test_full_chain_is_retrieved_with_version_cipher_and_timings(site: Site, run: Runner) -> None:
    """A valid site yields leaf + intermediate exactly as served, the TLS version, cipher and timings."""
    got: Presented = run(fetch(LOOPBACK, site.port, server_name="shop.example"))
    assert got.chain_der == der(site.valid)
    assert len(got.chain_der) == 2
    assert got.tls_version in {"TLS 1.2", "TLS 1.3"}
    assert got.cipher  # e.g. ECDHE-ECDSA-AES256-GCM-SHA384
    assert got.address == LOOPBACK and got.port == site.port and got.server_name == "shop.example"
    assert 0 <= got.connect_seconds < 5 and 0 < got.handshake_seconds < 5


def test_rsa_and_ecdsa_leaves(site: Site, run: Runner) -> None:
    """The same nginx serves an RSA and an ECDSA leaf by name; the suite follows the key type."""
    rsa = run(fetch(LOOPBACK, site.port, server_name="rsa.example"))
    ecdsa = run(fetch(LOOPBACK, site.port, server_name="shop.example"))
    assert rsa.chain_der == der(site.rsa) and ecdsa.chain_der == der(site.valid)
    if rsa.tls_version == "TLS 1.2":  # TLS 1.3 suite names do not name the key type
        assert "RSA" in rsa.cipher and "ECDSA" in ecdsa.cipher


def test_sni_selects_the_certificate(site: Site, run: Runner) -> None:
    """Each server name on the one port returns its own leaf; no SNI gets the default site."""
    async def all_names() -> list[Presented]:
        return list(await asyncio.gather(
            fetch(LOOPBACK, site.port, server_name="self.example"),
            fetch(LOOPBACK, site.port, server_name="old.example"),
            fetch(LOOPBACK, site.port, server_name="shop.example"),
            fetch(LOOPBACK, site.port),
        ))

    self_signed, expired, valid, default = run(all_names())
    assert self_signed.chain_der[0] == der(site.self_signed)[0]
    assert expired.chain_der[0] == der(site.expired)[0]
    assert valid.chain_der[0] == der(site.valid)[0]
    assert default.chain_der[0] == der(site.valid)[0] and default.server_name is None


def test_invalid_chains_are_still_retrieved(site: Site, run: Runner) -> None:
    """Self-signed and expired certificates are presented data, not handshake failures."""
    got = run(fetch(LOOPBACK, site.port, server_name="self.example"))
    assert got.chain_der == der(site.self_signed)  # a lone self-signed certificate
    cert = x509.load_der_x509_certificate(got.chain_der[0])
    assert cert.issuer == cert.subject
    got = run(fetch(LOOPBACK, site.port, server_name="old.example"))
    assert got.chain_der == der(site.expired)
    assert x509.load_der_x509_certificate(got.chain_der[0]).not_valid_after_utc < datetime.now(UTC)


def test_ip_literal_server_name_sends_no_sni(site: Site, run: Runner) -> None:
    """An IP given as server name is not sent as SNI (RFC 6066): the default site answers."""
    got = run(fetch(LOOPBACK, site.port, server_name=LOOPBACK))
    assert got.server_name is None
    assert got.chain_der[0] == der(site.valid)[0]


def test_legacy_tls10_server_is_observed(tmp_path: Path, run: Runner) -> None:
    """A TLS 1.0-only server (stdlib ssl at security level 0) still shows its chain, as "TLS 1.0"."""
    leaf = Pki().leaf(["legacy.example"])
    ctx = server_context(leaf, tmp_path, "legacy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pinning TLS 1.0 is the point here
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    with ThreadedServer(tls_after(ctx)) as srv:
        got = run(fetch(srv.host, srv.port, server_name="legacy.example"))
    assert got.tls_version == "TLS 1.0"
    assert got.chain_der == der(leaf)


def test_tls13_is_reported(tmp_path: Path, run: Runner) -> None:
    """A TLS 1.3-only server is reported as "TLS 1.3" with its TLS 1.3 suite."""
    leaf = Pki().leaf(["new.example"])
    ctx = server_context(leaf, tmp_path, "new")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with ThreadedServer(tls_after(ctx)) as srv:
        got = run(fetch(srv.host, srv.port, server_name="new.example"))
    assert got.tls_version == "TLS 1.3"
    assert got.cipher.startswith("TLS_")


def test_server_without_certificate_is_no_certificate(run: Runner) -> None:
    """An anonymous-suite server completes the handshake with no certificate: reason no_certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("aNULL:@SECLEVEL=0")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with ThreadedServer(tls_after(ctx)) as srv, pytest.raises(ProbeError) as caught:
        run(fetch(srv.host, srv.port))
    assert caught.value.reason is FailureReason.NO_CERTIFICATE
    assert (caught.value.address, caught.value.port) == (srv.host, srv.port)


def test_ipv6_loopback(tmp_path: Path, run: Runner) -> None:
    """IPv6 literals are probed over IPv6; without ::1 here, the failure is a connect-level reason."""
    if ipv6_loopback_available():
        leaf = Pki().leaf(["v6.example"])
        with ThreadedServer(tls_after(server_context(leaf, tmp_path, "v6")), host="::1") as srv:
            got = run(fetch("::1", srv.port, server_name="v6.example"))
        assert got.address == "::1"
        assert got.chain_der == der(leaf)
    else:
        with pytest.raises(ProbeError) as caught:
            run(fetch("::1", free_port(), connect_timeout=1.0))
        assert caught.value.reason in {FailureReason.CONNECT, FailureReason.REFUSED}
        assert caught.value.address == "::1"


def test_chain_larger_than_the_bound_is_chain_too_large(site: Site, run: Runner) -> None:
    """certloop's own chain-size bound applies after the handshake: reason chain_too_large."""
    size = sum(map(len, der(site.valid)))
    with pytest.raises(ProbeError) as caught:
        run(fetch(LOOPBACK, site.port, server_name="shop.example", max_chain_bytes=size - 1))
    assert caught.value.reason is FailureReason.CHAIN_TOO_LARGE
    assert f"{size} bytes" in caught.value.detail


def test_one_shared_observation_context() -> None:
    """Every probe shares one unverifying context that still allows legacy protocol versions."""
    ctx = observation_context()
    assert ctx is observation_context()
    assert ctx.verify_mode is ssl.CERT_NONE and not ctx.check_hostname
    assert ctx.minimum_version in {ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.SSLv3}


def test_unknown_starttls_name_is_a_programming_error() -> None:
    """A STARTTLS protocol name that is not in the table raises ValueError naming the known ones."""
    with pytest.raises(ValueError, match="known: ftp, imap, ldap"):
        asyncio.run(fetch(LOOPBACK, 1, starttls="gopher"))


def test_close_is_polite_and_immediate(tmp_path: Path, run: Runner) -> None:
    """The OpenSSL path (the fallback): the server sees a completed handshake followed by close_notify (not a
    reset or a bare EOF). The observation path never completes a handshake; its close is in test_tlsobserve."""
    leaf = Pki().leaf(["polite.example"])
    ctx = server_context(leaf, tmp_path, "polite")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    seen: queue.Queue[str] = queue.Queue()

    def handler(conn: socket.socket) -> None:
        tls = ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
        try:
            seen.put("close_notify" if tls.recv(1024) == b"" else "data")
        except (ssl.SSLError, OSError) as exc:
            seen.put(type(exc).__name__)

    with ThreadedServer(handler) as srv:
        run(fetch(srv.host, srv.port, server_name="polite.example", observe=False))
        assert seen.get(timeout=5) == "close_notify"


@pytest.mark.parametrize("observe", [True, False], ids=["observe", "openssl"])
@pytest.mark.parametrize("name", ["a..b", ".x", "x" * 64 + ".example", "a\x00b", "a b.example", "ß" * 70])
def test_unsendable_server_name_is_bad_server_name(name: str, observe: bool, run: Runner) -> None:
    """A name no TLS stack can send (empty label, label over 63 characters, NUL, a space, what
    IDNA 2008 refuses) is ProbeError(bad_server_name) on both paths, before any connection.
    Before: a raw UnicodeError (OpenSSL path) or ValueError (NUL, both paths)."""
    with ThreadedServer(lambda conn: None) as srv:
        with pytest.raises(ProbeError) as caught:
            run(fetch(srv.host, srv.port, server_name=name, observe=observe))
        assert srv.accepted == 0
    assert caught.value.reason is FailureReason.BAD_SERVER_NAME
    assert caught.value.address == srv.host and caught.value.port == srv.port


@pytest.mark.parametrize("observe", [True, False], ids=["observe", "openssl"])
def test_internationalised_sni_is_idna_2008(tmp_path: Path, pki: Pki, observe: bool, run: Runner) -> None:
    """``straße.example`` goes out as ``xn--strae-oqa.example`` on both paths (IDNA 2008, UTS 46;
    Python's IDNA 2003 codec would send ``strasse.example``, another domain)."""
    seen: list[str | None] = []
    ctx = server_context(pki.leaf(["xn--strae-oqa.example"]), tmp_path, "idn")

    def remember(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)

    ctx.sni_callback = remember  # type: ignore[assignment]
    with ThreadedServer(tls_after(ctx)) as srv:
        got = run(fetch(srv.host, srv.port, server_name="straße.example", observe=observe))
    assert got.server_name == "xn--strae-oqa.example"
    assert seen == ["xn--strae-oqa.example"]


def _open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_cancelling_a_probe_propagates_and_releases_the_socket(run: Runner) -> None:
    """A caller's cancellation is not a timeout: it propagates as CancelledError, and the socket
    and its loop registration are gone (the probe's own deadline must not swallow it)."""
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen(8)  # accepts (kernel backlog) and never speaks

        async def go() -> tuple[str, int]:
            before = _open_fds()
            task = asyncio.ensure_future(fetch(LOOPBACK, silent.getsockname()[1], handshake_timeout=30))
            # Accepted: the probe connected and waits for the server's flight, which never comes.
            accepted, _ = await asyncio.wait_for(asyncio.to_thread(silent.accept), 10)
            with accepted:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    outcome = "cancelled"
                except BaseException as exc:  # the test reports what else came out
                    outcome = type(exc).__name__
                else:
                    outcome = "returned"
            return outcome, _open_fds() - before

        outcome, leaked = run(go())
    assert outcome == "cancelled"
    assert leaked == 0


def test_a_timed_out_probe_leaves_the_caller_able_to_await(run: Runner) -> None:
    """The deadline's cancellation is consumed where it fires: after a timeout the calling task
    awaits normally again (no stray CancelledError at its next await)."""
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen(8)

        async def go() -> tuple[FailureReason | None, bool]:
            reason = None
            try:
                await fetch(LOOPBACK, silent.getsockname()[1], handshake_timeout=0.2)
            except ProbeError as exc:
                reason = exc.reason
            await asyncio.sleep(0.01)  # the await under test: no stray CancelledError arrives here
            task = asyncio.current_task()
            return reason, task is not None and task.cancelling() == 0

        reason, clean = run(go())
    assert reason is FailureReason.TIMEOUT
    assert clean


def test_many_probes_on_one_loop_leave_no_socket_or_registration(site: Site, run: Runner) -> None:
    """Success and refusal each release their socket and loop registration: a reused file
    descriptor number must not find a stale registration (which would fail the next probe)."""
    with socket.socket() as closed:
        closed.bind((LOOPBACK, 0))
        refused_port = closed.getsockname()[1]  # bound, not listening: connections are refused

        async def go() -> tuple[int, int, int]:
            before = _open_fds()
            ok = refused = 0
            for _ in range(20):
                presented = await fetch(LOOPBACK, site.port, server_name="shop.example")
                ok += bool(presented.chain_der)
                try:
                    await fetch(LOOPBACK, refused_port)
                except ProbeError as exc:
                    refused += exc.reason is FailureReason.REFUSED
            return ok, refused, _open_fds() - before

        ok, refused, leaked = run(go())
    assert (ok, refused, leaked) == (20, 20, 0)
