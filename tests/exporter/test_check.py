"""`certloop check`: the pure status decision, rendering, config subset, and end-to-end runs on files
and against real TLS servers (Python's own ssl stack) listening on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certloop.exporter.check import load_check_config, parse_target, run
from certloop.exporter.table import Row, Status, Thresholds, decide, exit_code, render_table
from certloop.verify import Verdict
from tests.support.pki import Issued, Pki

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden") / "check.json"
NOW = datetime(2030, 1, 1, tzinfo=UTC)
TH = Thresholds(warn=timedelta(days=21), crit=timedelta(days=7))


# ------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("verdict", "days", "failure", "expected"),
    [
        (Verdict.OK, 90, None, (Status.OK, None)),
        (Verdict.OK, 21.5, None, (Status.OK, None)),
        (Verdict.OK, 21, None, (Status.WARN, None)),  # thresholds are inclusive
        (Verdict.OK, 8, None, (Status.WARN, None)),
        (Verdict.OK, 7, None, (Status.CRIT, None)),
        (Verdict.OK, 0.01, None, (Status.CRIT, None)),
        (Verdict.EXPIRED, -1, None, (Status.EXPIRED, "expired")),
        (Verdict.INTERMEDIATE_EXPIRED, 30, None, (Status.EXPIRED, "intermediate_expired")),
        (Verdict.HOSTNAME_MISMATCH, 90, None, (Status.INVALID, "hostname_mismatch")),
        (Verdict.NOT_YET_VALID, 90, None, (Status.INVALID, "not_yet_valid")),
        (Verdict.UNKNOWN_AUTHORITY, 3, None, (Status.INVALID, "unknown_authority")),
        (None, None, "refused", (Status.UNREACHABLE, "refused")),
    ],
)
def test_decide(verdict: Verdict | None, days: float | None, failure: str | None,
                expected: tuple[Status, str | None]) -> None:
    """Status of an endpoint from verdict, time left and thresholds: invalid beats time left (the
    endpoint verification alert), thresholds inclusive."""
    expiry = NOW + timedelta(days=days) if days is not None else None
    assert decide(verdict, expiry, now=NOW, thresholds=TH, failure=failure) == expected


@pytest.mark.parametrize(
    ("verdict", "days", "expected"),
    [
        (Verdict.OK, 90, (Status.OK, None)),
        (Verdict.INCOMPLETE_CHAIN, 90, (Status.OK, "incomplete_chain")),
        (Verdict.SELF_SIGNED, 21, (Status.WARN, "self_signed")),
        (Verdict.UNKNOWN_AUTHORITY, 3, (Status.CRIT, "unknown_authority")),
        (Verdict.INVALID, 90, (Status.OK, "invalid")),
        (Verdict.HOSTNAME_MISMATCH, 90, (Status.OK, "hostname_mismatch")),
        (Verdict.INCOMPLETE_CHAIN, None, (Status.INVALID, "incomplete_chain")),
        (Verdict.NOT_YET_VALID, 90, (Status.INVALID, "not_yet_valid")),
        (Verdict.EXPIRED, -1, (Status.EXPIRED, "expired")),
        (Verdict.INTERMEDIATE_EXPIRED, 30, (Status.EXPIRED, "intermediate_expired")),
    ],
)
def test_decide_file_follows_the_file_alerts(verdict: Verdict, days: float | None,
                                             expected: tuple[Status, str | None]) -> None:
    """A file's verdict alerts only for expiry and not_yet_valid (no verification alert for files), so
    any other verdict is judged by the time left and kept as the reason; the thresholds are the same."""
    expiry = NOW + timedelta(days=days) if days is not None else None
    assert decide(verdict, expiry, now=NOW, thresholds=TH, kind="file") == expected


@pytest.mark.parametrize("kind", ["endpoint", "file"])
def test_weak_crypto_is_at_least_warn(kind: str) -> None:
    """A chain with weak crypto is WARN (weak_crypto) when it would be OK, as CertloopCertificateWeakCrypto
    (severity warning) alerts for endpoints and files; a worse status stays."""
    far, near = NOW + timedelta(days=90), NOW + timedelta(days=3)
    assert decide(Verdict.OK, far, now=NOW, thresholds=TH, kind=kind, weak=True) == (Status.WARN, "weak_crypto")
    assert decide(Verdict.OK, near, now=NOW, thresholds=TH, kind=kind, weak=True) == (Status.CRIT, None)
    assert decide(Verdict.OK, far, now=NOW, thresholds=TH, kind=kind, weak=False) == (Status.OK, None)
    assert decide(Verdict.EXPIRED, far, now=NOW, thresholds=TH, kind=kind, weak=True)[0] is Status.EXPIRED


def test_decide_file_content_problem_is_invalid() -> None:
    """A failure that is not about reaching the target (e.g. a file without certificate) is INVALID."""
    assert decide(None, None, now=NOW, thresholds=TH, failure="no_certificate", unreachable=False) == (
        Status.INVALID, "no_certificate",
    )


def test_exit_code_is_the_worst_row() -> None:
    """0 all OK, 1 when the worst is WARN, 2 for CRIT/EXPIRED/INVALID/UNREACHABLE."""
    def rows(*statuses: Status) -> list[Row]:
        return [Row("t", "file", s) for s in statuses]
    assert exit_code(rows(Status.OK, Status.OK)) == 0
    assert exit_code(rows(Status.OK, Status.WARN)) == 1
    for bad in (Status.CRIT, Status.EXPIRED, Status.INVALID, Status.UNREACHABLE):
        assert exit_code(rows(Status.WARN, bad, Status.OK)) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shop.example:8443", ("shop.example", 8443)),
        ("shop.example", ("shop.example", 443)),
        ("127.0.0.1:853", ("127.0.0.1", 853)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::1]", ("::1", 443)),
        ("::1", ("::1", 443)),
    ],
)
def test_parse_target(text: str, expected: tuple[str, int]) -> None:
    """Targets are host:port with port 443 by default; IPv6 in brackets (or bare without a port)."""
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["shop.example:0", "shop.example:99999", "shop.example:https", "[::1:443", ""])
def test_parse_target_rejects(text: str) -> None:
    """Bad ports and broken brackets are refused with a ValueError."""
    with pytest.raises(ValueError):
        parse_target(text)


def test_table_colour_only_when_asked() -> None:
    """The plain table has no escape codes; the coloured one colours the status."""
    rows = [Row("a:443", "endpoint", Status.OK, address="127.0.0.1", subject="CN=a", not_after=NOW),
            Row("b:443", "endpoint", Status.UNREACHABLE, "timeout")]
    plain = render_table(rows, now=NOW - timedelta(days=3))
    assert "\x1b[" not in plain
    assert "UNREACHABLE (timeout)" in plain
    assert plain.splitlines()[1].split() == ["a:443", "127.0.0.1", "a", "-", "2030-01-01", "00:00", "3", "OK"]
    coloured = render_table(rows, now=NOW, colour=True)
    assert "\x1b[32mOK\x1b[0m" in coloured


# ------------------------------------------------------------------------------------- files, golden


def _det_key(seed: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(seed * 7919 + 104729, ec.SECP256R1())


def _det_cert(seed: int, subject: str, issuer: str, issuer_seed: int, nb: datetime, na: datetime,
              names: list[str], ca: bool = False) -> x509.Certificate:
    """A byte-for-byte reproducible certificate (P-256 keys from fixed scalars, RFC 6979 signatures,
    a fixed serial) with the extensions the Web PKI policy asks of a CA and of a server leaf."""
    key, issuer_key = _det_key(seed), _det_key(issuer_seed)
    usage = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
                           "encipher_only", "decipher_only"), False)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key()).serial_number(seed * 1000 + 7)
        .not_valid_before(nb).not_valid_after(na)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, **usage), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _golden_files(directory: Path) -> list[str]:
    """Reproducible files, judged as the exporter judges files: against ``root.pem`` (written here,
    for ``--ca-file``), the file's certificates as one chain. Returns the names to check, in order."""
    root = _det_cert(1, "golden root", "golden root", 1, NOW - timedelta(days=100), NOW + timedelta(days=3000),
                     [], ca=True)
    (directory / "root.pem").write_bytes(_pem(root))
    stranger = _det_cert(10, "stranger root", "stranger root", 10, NOW - timedelta(days=100),
                         NOW + timedelta(days=3000), [], ca=True)

    def leaf(seed: int, name: str, nb_days: float, na_days: float, issuer: str = "golden root",
             issuer_seed: int = 1) -> x509.Certificate:
        return _det_cert(seed, name, issuer, issuer_seed, NOW + timedelta(days=nb_days),
                         NOW + timedelta(days=na_days), [name])

    files = {
        "ok.pem": _pem(leaf(2, "ok.example", -10, 90)),
        "warn.pem": _pem(leaf(3, "warn.example", -80, 10)),
        "crit.pem": _pem(leaf(4, "crit.example", -80, 2.5)),
        "expired.pem": _pem(leaf(5, "expired.example", -90, -1)),
        "future.pem": _pem(leaf(6, "future.example", 5, 95)),
        "bundle.pem": _pem(leaf(7, "bundle.example", -1, 60)) + b"\n# garbage \x00\n" + _pem(root),
        "self.pem": _pem(leaf(8, "self.example", -1, 60, "self.example", 8)),
        "stranger.pem": _pem(leaf(9, "stranger.example", -1, 60, "stranger root", 10), stranger),
        "orphan.pem": _pem(leaf(11, "orphan.example", -1, 60, "stranger root", 10)),
        "garbage.pem": b"this is not a certificate\n",
        "empty.pem": b"",
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return [*files, "missing.pem"]


def test_golden_json_on_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--output json` over reproducible files at a fixed clock equals the committed golden document:
    one row per file, in the order given, with the exporter's verdict for it.

    Regenerate with CERTLOOP_UPDATE_GOLDEN=1 after an intended change, and review the diff."""
    monkeypatch.chdir(tmp_path)
    names = _golden_files(tmp_path)
    out = io.StringIO()
    code = run(["--output", "json", "--ca-file", "root.pem", *names], clock=lambda: NOW, stdout=out,
               stderr=io.StringIO())
    assert code == 2
    if os.environ.get("CERTLOOP_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(out.getvalue())
    assert json.loads(out.getvalue()) == json.loads(GOLDEN.read_text())
    assert out.getvalue() == GOLDEN.read_text()  # byte-stable: sorted keys, fixed indentation


def test_file_statuses_in_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain table over the same files shows each status with its reason and no colour when piped.
    A file is verified as the exporter verifies it (its certificates as one chain, against the trust
    store): a self-signed, foreign or leaf-only file keeps that verdict as its reason, its status by
    the time left as the file alerts have it."""
    monkeypatch.chdir(tmp_path)
    names = _golden_files(tmp_path)
    out = io.StringIO()
    run(["--ca-file", "root.pem", *names], clock=lambda: NOW, stdout=out, stderr=io.StringIO())
    lines = out.getvalue().splitlines()[1:]
    by_target = {line.split()[0]: line for line in lines}
    assert [line.split()[0] for line in lines] == names  # one row per file, in the order given
    assert by_target["ok.pem"].endswith(" OK")
    assert by_target["warn.pem"].endswith(" WARN")
    assert by_target["crit.pem"].endswith(" CRIT")
    assert by_target["expired.pem"].endswith("EXPIRED (expired)")
    assert by_target["future.pem"].endswith("INVALID (not_yet_valid)")
    assert by_target["bundle.pem"].endswith(" OK")
    assert by_target["self.pem"].endswith(" OK (self_signed)")
    assert by_target["stranger.pem"].endswith(" OK (unknown_authority)")
    assert by_target["orphan.pem"].endswith(" OK (incomplete_chain)")  # a leaf without its issuer
    assert by_target["garbage.pem"].endswith("INVALID (no_certificate)")
    assert by_target["empty.pem"].endswith("INVALID (empty)")
    assert by_target["missing.pem"].endswith("UNREACHABLE (not_found)")
    assert "\x1b[" not in out.getvalue()


def test_only_warnings_exit_1_and_all_ok_exit_0(tmp_path: Path) -> None:
    """Exit code 1 when the worst certificate is WARN, 0 when every one is OK."""
    _golden_files(tmp_path)
    quiet = {"clock": lambda: NOW, "stdout": io.StringIO(), "stderr": io.StringIO()}
    ca = ["--ca-file", str(tmp_path / "root.pem")]
    assert run([*ca, str(tmp_path / "ok.pem"), str(tmp_path / "warn.pem")], **quiet) == 1  # type: ignore[arg-type]
    assert run([*ca, str(tmp_path / "ok.pem")], **quiet) == 0  # type: ignore[arg-type]
    assert run([*ca, "--warn", "5d", "--crit", "1d", str(tmp_path / "warn.pem")], **quiet) == 0  # type: ignore[arg-type]
    assert run([str(tmp_path / "ok.pem")], **quiet) == 0  # type: ignore[arg-type]  # the system store: OK (unknown_authority)
    assert run([str(tmp_path / "crit.pem")], **quiet) == 2  # type: ignore[arg-type]  # CRIT (unknown_authority)


def test_usage_errors_exit_64(tmp_path: Path) -> None:
    """Unknown flags, bad durations, crit > warn, no targets and bad targets exit 64; --help exits 0."""
    err = io.StringIO()
    assert run(["--bogus"], stdout=io.StringIO(), stderr=err) == 64
    assert run(["--warn", "soon", "x.pem"], stdout=io.StringIO(), stderr=err) == 64
    assert run(["--warn", "1d", "--crit", "2d", "x.pem"], stdout=io.StringIO(), stderr=err) == 64
    assert run([], stdout=io.StringIO(), stderr=err) == 64
    assert run(["shop.example:notaport"], stdout=io.StringIO(), stderr=err) == 64
    assert run(["--config", str(tmp_path / "missing.yml")], stdout=io.StringIO(), stderr=err) == 78
    help_run = subprocess.run(
        [sys.executable, "-m", "certloop.cli", "check", "--help"], cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert help_run.returncode == 0
    assert "exit codes:" in help_run.stdout and "64 usage" in help_run.stdout
    assert "exporter's own config model" in help_run.stdout  # what --config reads is documented


def test_config_is_the_exporters_model(tmp_path: Path, pki: Pki) -> None:
    """--config reads the exporter's config model: endpoints take group and module settings (server_name,
    starttls, ca_file, ip_protocol, timeouts), files their group's include/exclude and password; a key
    in a listed directory is left out by the default include while a file named explicitly is reported;
    a key the exporter refuses is refused here with the exporter's message. Before: a hand parser that
    ignored include/exclude, module ca_file, ip_protocol and max_file_bytes and accepted unknown keys."""
    certs = tmp_path / "certs"
    pki.leaf(["a.example"]).write(certs, "a")  # a.crt, a.key, a.chain.pem, a.fullchain.pem
    (tmp_path / "p.p12").write_bytes(pki.leaf(["p.example"]).pkcs12(b"pw"))
    (tmp_path / "pw").write_text("pw\n")
    ca = pki.write_root(tmp_path / "ca.pem")
    config = tmp_path / "exporter.yml"
    endpoints_part = (
        "global: {interval: 5m, connect_timeout: 2s, resolver: ['127.0.0.1:53'], max_file_bytes: 4096}\n"
        f"modules: {{mail: {{starttls: smtp, ca_file: '{ca}', ip_protocol: ip4, handshake_timeout: 3s}}}}\n"
        "endpoints:\n"
        "  - targets: [shop.example:443, '[::1]:8443']\n"
        "    server_name: shop.example\n"
        "    labels: {certificate: shop}\n"
        "  - {targets: [mx.example:25], module: mail}\n"
    )
    files_part = (
        "files:\n"
        f"  - paths: ['{certs}']\n"
        "    exclude: ['*.chain.pem']\n"
        "    labels: {team: web}\n"
        f"  - {{paths: ['{tmp_path}/p.p12'], password_file: '{tmp_path}/pw'}}\n"
    )
    config.write_text(endpoints_part + files_part)
    endpoints, model = load_check_config(str(config))
    assert [(e.host, e.port, e.server_name, e.starttls, e.ca_file, e.ip_protocol, e.connect_timeout,
             e.handshake_timeout) for e in endpoints] == [
        ("shop.example", 443, "shop.example", None, None, "both", 2.0, 5.0),
        ("::1", 8443, "shop.example", None, None, "both", 2.0, 5.0),
        ("mx.example", 25, None, "smtp", str(ca), "ip4", 2.0, 3.0),
    ]
    assert model.global_.resolver == ["127.0.0.1:53"]
    # run the file part: the directory's files by the group's include/exclude (a.key and a.chain.pem
    # left out), a.key named explicitly is reported, p.p12 opens with its password file, and a file
    # over global.max_file_bytes is too_large
    (tmp_path / "big.pem").write_bytes(pki.leaf(["big.example"]).fullchain_pem + b"#" * 4096)
    files_only = tmp_path / "files.yml"
    files_only.write_text(f"global: {{max_file_bytes: 4096, ca_file: '{ca}'}}\n" + files_part
                          + f"  - {{paths: ['{tmp_path}/big.pem']}}\n")
    out = io.StringIO()
    code = run(["--config", str(files_only), "--output", "json", str(certs / "a.key")], stdout=out,
               stderr=io.StringIO())
    results = json.loads(out.getvalue())["results"]
    targets = [(Path(r["target"]).name, r["status"], r["reason"]) for r in results]
    assert targets == [
        ("a.crt", "OK", "incomplete_chain"),  # the leaf alone: its intermediate is not in the file
        ("a.fullchain.pem", "OK", None),
        ("p.p12", "OK", None),
        ("big.pem", "INVALID", "too_large"),
        ("a.key", "INVALID", "no_certificate"),
    ]
    assert code == 2
    # what the exporter refuses, check refuses, with the exporter's message
    config.write_text(endpoints_part + "something_else: {ignored: true}\n")
    err = io.StringIO()
    assert run(["--config", str(config)], stdout=io.StringIO(), stderr=err) == 78
    assert "something_else" in err.getvalue()


# ------------------------------------------------------------------------------------- real TLS


@contextmanager
def tls_server(certs: Mapping[str | None, Issued], tmp: Path, host: str = "127.0.0.1") -> Iterator[int]:
    """A real TLS server (Python's ssl module) on ``host`` (loopback), a port chosen by the OS.

    ``certs`` maps an SNI name to the certificate served for it (``None``: served without SNI or
    for an unknown name). Each certificate is sent with its chain."""
    contexts: dict[str | None, ssl.SSLContext] = {}
    for i, (name, issued) in enumerate(certs.items()):
        paths = issued.write(tmp, f"srv{i}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(paths["fullchain"], paths["key"])
        contexts[name] = ctx
    default = contexts.get(None) or next(iter(contexts.values()))

    def pick(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.context = contexts.get(name, default)

    default.sni_callback = pick  # type: ignore[assignment]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(OSError, ssl.SSLError):
            await reader.read(1)
        writer.close()

    stop: list[asyncio.Event] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        server = await asyncio.start_server(handle, host, 0, ssl=default)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await stop[0].wait()

    loop.set_exception_handler(lambda _loop, _ctx: None)  # clients closing early are not errors here
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "TLS server did not start"
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
        assert not thread.is_alive(), "TLS server did not stop"
        loop.close()


def _json(argv: list[str], **kwargs: object) -> tuple[int, list[dict[str, object]]]:
    out = io.StringIO()
    code = run(["--output", "json", *argv], stdout=out, stderr=io.StringIO(), **kwargs)  # type: ignore[arg-type]
    return code, json.loads(out.getvalue())["results"]


def test_endpoint_ok_warn_and_mismatch(tmp_path: Path, pki: Pki) -> None:
    """Against a real TLS server: a trusted chain is OK, a short-lived leaf (by SNI) CRIT, a name the
    leaf does not cover INVALID (hostname_mismatch); the address probed is reported."""
    ca = pki.write_root(tmp_path / "ca.pem")
    served = {
        "shop.example": pki.leaf(["shop.example"], days=90),
        "soon.example": pki.leaf(["soon.example"], days=3),
        None: pki.leaf(["default.example"], days=90),
    }
    with tls_server(served, tmp_path) as port:
        code, rows = _json([f"127.0.0.1:{port}", "--server-name", "shop.example", "--ca-file", str(ca)])
        assert code == 0
        assert rows[0]["status"] == "OK" and rows[0]["address"] == "127.0.0.1"
        assert rows[0]["subject"] == "CN=shop.example"
        assert rows[0]["fingerprint_sha256"] == served["shop.example"].fingerprint
        assert rows[0]["tls_version"] in {"TLS 1.2", "TLS 1.3"}
        assert 89 < float(rows[0]["days_left"]) <= 90  # type: ignore[arg-type]
        code, rows = _json([f"127.0.0.1:{port}", "--server-name", "soon.example", "--ca-file", str(ca)])
        assert (code, rows[0]["status"]) == (2, "CRIT")
        code, rows = _json([f"127.0.0.1:{port}", "--server-name", "other.example", "--ca-file", str(ca)])
        assert (code, rows[0]["status"], rows[0]["reason"]) == (2, "INVALID", "hostname_mismatch")
        # without --ca-file the system store does not know the test root
        code, rows = _json([f"127.0.0.1:{port}", "--server-name", "shop.example"])
        assert rows[0]["reason"] == "unknown_authority"


def test_endpoint_broken_chains(tmp_path: Path, pki: Pki) -> None:
    """Self-signed, expired and missing-intermediate chains served for real get their reasons."""
    ca = pki.write_root(tmp_path / "ca.pem")
    expired = pki.leaf(["old.example"], not_before=pki.now - timedelta(days=100),
                       not_after=pki.now - timedelta(days=1))
    no_chain = pki.leaf(["bare.example"])
    no_chain.chain = []
    served = {"self.example": pki.self_signed(["self.example"]), "old.example": expired,
              "bare.example": no_chain}
    with tls_server(served, tmp_path) as port:
        target = f"localhost:{port}"
        expected = {"self.example": ("INVALID", "self_signed"), "old.example": ("EXPIRED", "expired"),
                    "bare.example": ("INVALID", "incomplete_chain")}
        for name, (status, reason) in expected.items():
            code, rows = _json([target, "--server-name", name, "--ca-file", str(ca)])
            assert code == 2
            v4 = [r for r in rows if r["address"] == "127.0.0.1"]  # the server listens on IPv4 only
            assert [(r["status"], r["reason"]) for r in v4] == [(status, reason)]


def test_unreachable_endpoint_and_mixed_run(tmp_path: Path, pki: Pki) -> None:
    """A refused port is UNREACHABLE (refused) next to a healthy endpoint and a file in one run."""
    ca = pki.write_root(tmp_path / "ca.pem")
    leaf = pki.leaf(["shop.example"])
    paths = leaf.write(tmp_path, "file")
    with tls_server({None: leaf}, tmp_path) as port:
        import socket

        with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        code, rows = _json([f"127.0.0.1:{port}", f"127.0.0.1:{closed}", str(paths["fullchain"]),
                            "--server-name", "shop.example", "--ca-file", str(ca), "--timeout", "2s"])
    assert code == 2
    assert [(r["kind"], r["status"], r["reason"]) for r in rows] == [
        ("endpoint", "OK", None), ("endpoint", "UNREACHABLE", "refused"), ("file", "OK", None),
    ]


def test_terminal_gets_colour_and_progress_unless_no_color(tmp_path: Path, pki: Pki,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal (a pty) the status is coloured and a progress line is drawn on stderr; NO_COLOR
    turns colour off."""
    a, b = pki.leaf(["a.example"]).write(tmp_path, "a"), pki.leaf(["b.example"]).write(tmp_path, "b")
    ca = pki.write_root(tmp_path / "ca.pem")

    def on_pty() -> tuple[str, str]:
        results = []
        for _ in range(2):
            master, slave = os.openpty()
            results.append((master, open(slave, "w", encoding="utf-8")))  # noqa: SIM115 -- closed below
        (out_m, out), (err_m, err) = results
        run([str(a["fullchain"]), str(b["fullchain"]), "--ca-file", str(ca)], stdout=out, stderr=err)
        out.close()
        err.close()
        texts = [os.read(out_m, 65536).decode(), os.read(err_m, 65536).decode()]
        os.close(out_m)
        os.close(err_m)
        return texts[0], texts[1]

    monkeypatch.delenv("NO_COLOR", raising=False)
    stdout, stderr = on_pty()
    assert "\x1b[32mOK\x1b[0m" in stdout
    assert "checking 2/2" in stderr
    monkeypatch.setenv("NO_COLOR", "1")
    stdout, _ = on_pty()
    assert "\x1b[" not in stdout and " OK" in stdout


def test_cli_piped_output_is_plain(tmp_path: Path, pki: Pki) -> None:
    """`certloop check FILE` as a subprocess with stdout piped: a plain table and exit 0."""
    paths = pki.leaf(["p.example"], days=90).write(tmp_path, "p")
    ca = pki.write_root(tmp_path / "ca.pem")
    done = subprocess.run(
        [sys.executable, "-m", "certloop.cli", "check", str(paths["fullchain"]), "--ca-file", str(ca)], cwd=REPO,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout and "p.example" in done.stdout
    assert done.stdout.splitlines()[0].split()[:3] == ["TARGET", "ADDRESS", "SUBJECT"]
    assert done.stderr == ""


def test_config_endpoints_and_ipv6(tmp_path: Path, pki: Pki) -> None:
    """Endpoints from --config (with global.ca_file and a server_name) are probed, over IPv6 too."""
    ca = pki.write_root(tmp_path / "ca.pem")
    leaf = pki.leaf(["shop.example"], days=15)
    with tls_server({None: leaf}, tmp_path / "v4") as port4, \
            tls_server({None: leaf}, tmp_path / "v6", host="::1") as port6:
        config = tmp_path / "exporter.yml"
        config.write_text(
            f"global: {{ca_file: '{ca}', connect_timeout: 3s}}\n"
            "endpoints:\n"
            f"  - targets: ['127.0.0.1:{port4}', '[::1]:{port6}']\n"
            "    server_name: shop.example\n"
            "    labels: {certificate: shop}\n"
        )
        code, rows = _json(["--config", str(config)])
    assert code == 1  # 15 days left: WARN
    assert [(r["address"], r["status"], r["server_name"]) for r in rows] == [
        ("127.0.0.1", "WARN", "shop.example"), ("::1", "WARN", "shop.example"),
    ]


def _openssl_self_signed(directory: Path, name: str) -> tuple[Issued, Path]:
    """A self-signed certificate made as operators make one (``openssl req -x509``: CA:TRUE, a SAN)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "365", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True, timeout=30,
    )
    issued = Issued(x509.load_pem_x509_certificate(cert.read_bytes()),
                    load_pem_private_key(key.read_bytes(), None))  # type: ignore[arg-type]
    return issued, cert


def test_self_signed_certificate_pinned_with_ca_file_is_ok(tmp_path: Path) -> None:
    """A self-signed certificate that --ca-file holds itself (pinned) is OK, as OpenSSL, Python's ssl
    and Go judge it; without it, it stays INVALID (self_signed). Before: INVALID (self_signed)."""
    issued, pem = _openssl_self_signed(tmp_path / "pin", "internal.example")
    with tls_server({None: issued}, tmp_path) as port:
        code, rows = _json([f"127.0.0.1:{port}", "--server-name", "internal.example", "--ca-file", str(pem)])
        assert (code, rows[0]["status"], rows[0]["reason"]) == (0, "OK", None)
        code, rows = _json([f"127.0.0.1:{port}", "--server-name", "other.example", "--ca-file", str(pem)])
        assert (code, rows[0]["status"], rows[0]["reason"]) == (2, "INVALID", "hostname_mismatch")
        other_ca = Pki().write_root(tmp_path / "other-ca.pem")
        code, rows = _json([f"127.0.0.1:{port}", "--server-name", "internal.example", "--ca-file", str(other_ca)])
        assert (code, rows[0]["status"], rows[0]["reason"]) == (2, "INVALID", "self_signed")


@pytest.mark.parametrize("name", ["a..b", ".x", "x" * 64 + ".example", "a\x00b.example"],
                         ids=["empty-label", "leading-dot", "label-64", "nul"])
def test_bad_server_name_is_a_row_and_the_others_are_kept(tmp_path: Path, pki: Pki, name: str) -> None:
    """A server name that cannot be sent (empty label, label over 63 characters, NUL) is its own row,
    UNREACHABLE (bad_server_name), exit 2, and every other row is still there; in a config file it
    is refused as the exporter refuses it. Before: a raw UnicodeError/ValueError traceback, exit 1,
    every row lost."""
    ca = pki.write_root(tmp_path / "ca.pem")
    leaf = pki.leaf(["shop.example"])
    config = tmp_path / "exporter.yml"
    with tls_server({None: leaf}, tmp_path) as port:
        config.write_text(json.dumps({"endpoints": [
            {"targets": [f"127.0.0.1:{port}"], "server_name": "shop.example"},
        ]}))
        code, rows = _json([f"{name}:{port}", "--config", str(config), "--ca-file", str(ca)])
        assert code == 2
        assert [(r["status"], r["reason"]) for r in rows] == [("OK", None), ("UNREACHABLE", "bad_server_name")]
        code, rows = _json([f"127.0.0.1:{port}", "--server-name", name, "--ca-file", str(ca)])
        assert (code, [(r["status"], r["reason"]) for r in rows]) == (2, [("UNREACHABLE", "bad_server_name")])
    config.write_text(json.dumps({"endpoints": [{"targets": [f"127.0.0.1:{port}"], "server_name": name}]}))
    err = io.StringIO()
    assert run(["--config", str(config)], stdout=io.StringIO(), stderr=err) == 78
    assert "endpoints[0].server_name" in err.getvalue()


def test_internationalised_name_is_sent_as_idna_2008(tmp_path: Path, pki: Pki) -> None:
    """``straße.example`` is probed and verified as ``xn--strae-oqa.example`` (IDNA 2008, UTS 46), not
    as IDNA 2003's ``strasse.example``, which is another domain."""
    ca = pki.write_root(tmp_path / "ca.pem")
    served = {"xn--strae-oqa.example": pki.leaf(["xn--strae-oqa.example"]),
              "strasse.example": pki.leaf(["strasse.example"]), None: pki.leaf(["default.example"])}
    with tls_server(served, tmp_path) as port:
        code, rows = _json([f"127.0.0.1:{port}", "--server-name", "straße.example", "--ca-file", str(ca)])
    assert (code, rows[0]["status"]) == (0, "OK")
    assert rows[0]["fingerprint_sha256"] == served["xn--strae-oqa.example"].fingerprint


def test_directory_argument_checks_its_certificate_files(tmp_path: Path, pki: Pki) -> None:
    """``certloop check /etc/nginx/certs/`` (the README's example) checks the files the exporter takes
    from the directory (the default include: keys named *.key left out), one row per file, by path.
    Before: UNREACHABLE (not_a_file)."""
    certs = tmp_path / "certs"
    a, b = pki.leaf(["a.example"], days=90), pki.leaf(["b.example"], days=3)
    a.write(certs, "a")
    (certs / "b.pem").write_bytes(b.fullchain_pem)
    ca = pki.write_root(tmp_path / "ca.pem")
    code, rows = _json([f"{certs}/", "--ca-file", str(ca)])
    assert [(Path(str(r["target"])).name, r["status"], r["reason"]) for r in rows] == [
        ("a.chain.pem", "OK", "invalid"),  # the intermediate alone, judged as a chain
        ("a.crt", "OK", "incomplete_chain"),
        ("a.fullchain.pem", "OK", None),
        ("b.pem", "CRIT", None),
    ]
    assert all(r["kind"] == "file" for r in rows)
    assert code == 2


def test_an_ip_target_without_server_name_verifies_no_name_as_the_exporter_does(tmp_path: Path, pki: Pki) -> None:
    """``certloop check 127.0.0.1:PORT`` sends no SNI and verifies no name (`certloop.probe.target_names`,
    the exporter's rule): a trusted leaf without an IP SAN is OK, its row has no server_name. Before:
    check verified the chain against the IP literal and said INVALID (hostname_mismatch)."""
    ca = pki.write_root(tmp_path / "ca.pem")
    with tls_server({None: pki.leaf(["shop.example"])}, tmp_path) as port:
        code, rows = _json([f"127.0.0.1:{port}", "--ca-file", str(ca)])
        assert (code, rows[0]["status"], rows[0]["reason"]) == (0, "OK", None)
        assert rows[0].get("server_name") is None
        code, rows = _json([f"127.0.0.1:{port}", "--server-name", "127.0.0.1", "--ca-file", str(ca)])
        assert (rows[0]["status"], rows[0]["reason"]) == ("INVALID", "hostname_mismatch")


def test_leaf_only_and_self_signed_files_are_judged_by_time_left(tmp_path: Path, pki: Pki) -> None:
    """``certloop check /etc/letsencrypt/live/x/cert.pem`` (the leaf alone) and a self-signed file are
    OK far from expiry, their verdict shown as the reason (no alert fires on a file's verdict); the
    same self-signed file 3 days from expiry is CRIT. Before: INVALID (incomplete_chain / self_signed),
    exit 2, for certificates that are fine."""
    ca = pki.write_root(tmp_path / "ca.pem")
    cert = tmp_path / "cert.pem"
    cert.write_bytes(pki.leaf(["x.example"], days=90).pem)
    own = tmp_path / "internal.pem"
    own.write_bytes(pki.self_signed(["internal.example"], days=90).pem)
    code, rows = _json([str(cert), str(own), "--ca-file", str(ca)])
    assert (code, [(r["status"], r["reason"], r["verdict"]) for r in rows]) == (0, [
        ("OK", "incomplete_chain", "incomplete_chain"), ("OK", "self_signed", "self_signed"),
    ])
    out = io.StringIO()
    assert run([str(cert), str(own), "--ca-file", str(ca)], stdout=out, stderr=io.StringIO()) == 0
    lines = out.getvalue().splitlines()[1:]
    assert lines[0].startswith(str(cert)) and lines[0].endswith(" OK (incomplete_chain)")
    assert lines[1].startswith(str(own)) and lines[1].endswith(" OK (self_signed)")
    later = pki.now + timedelta(days=87)
    code, rows = _json([str(own), "--ca-file", str(ca)], clock=lambda: later)
    assert (code, [(r["status"], r["reason"], r["verdict"]) for r in rows]) == (2, [
        ("CRIT", "self_signed", "self_signed"),
    ])


def test_a_weak_key_file_is_warn(tmp_path: Path, pki: Pki) -> None:
    """A valid chain whose leaf has an RSA-1024 key is WARN (weak_crypto), exit 1, where the exporter's
    CertloopCertificateWeakCrypto (severity warning) fires; the same chain with a strong key is OK."""
    ca = pki.write_root(tmp_path / "ca.pem")
    weak, strong = tmp_path / "weak.pem", tmp_path / "strong.pem"
    weak.write_bytes(pki.leaf(["weak.example"], days=90, key_kind="rsa1024").fullchain_pem)
    strong.write_bytes(pki.leaf(["strong.example"], days=90).fullchain_pem)
    code, rows = _json([str(weak), str(strong), "--ca-file", str(ca)])
    assert (code, [(r["status"], r["reason"]) for r in rows]) == (1, [("WARN", "weak_crypto"), ("OK", None)])
