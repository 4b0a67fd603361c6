"""certloop.x509 and certloop.facts: PEM/DER/PKCS#12 files into certificates and facts, over minted certificates."""

from __future__ import annotations

import gc
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from certloop.caches import Caches
from certloop.errors import FileError, FileReason
from certloop.facts import Role, chain_roles, facts
from certloop.x509 import load_der_chain, parse_certificates, parse_pem, read_certificate_file
from tests.support.pki import Pki, build_cert


def _reason(path: Path, **kwargs: object) -> FileReason:
    with pytest.raises(FileError) as info:
        read_certificate_file(path, Caches(), **kwargs)  # type: ignore[arg-type]
    assert info.value.path == str(path)
    return info.value.reason


def test_bundle_with_key_and_garbage_between_blocks(pki: Pki, tmp_path: Path, caches: Caches) -> None:
    """Every certificate of a bundle is returned in order; keys and text between blocks are skipped."""
    leaf = pki.leaf(["shop.example"])
    other = pki.leaf(["other.example"])
    data = (
        b"# a comment an operator left\n" + leaf.key_pem + b"garbage \x00\xff between\n" + leaf.pem
        + b"Certificate:\n    Data: openssl -text output\n" + pki.intermediate.pem + other.pem
    )
    path = tmp_path / "bundle.pem"
    path.write_bytes(data)
    parsed = read_certificate_file(path, caches)
    assert parsed.certificates == (leaf.cert, pki.intermediate.cert, other.cert)
    assert parsed.keys == 1
    assert parsed.problems == ()


def test_corrupt_block_does_not_hide_the_others(pki: Pki, tmp_path: Path, caches: Caches) -> None:
    """A PEM block that does not decode is a problem with its index; the blocks around it are kept."""
    a, b = pki.leaf(["a.example"]), pki.leaf(["b.example"])
    broken = b"-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    path = tmp_path / "mixed.pem"
    path.write_bytes(a.pem + broken + b.pem)
    parsed = read_certificate_file(path, caches)
    assert parsed.certificates == (a.cert, b.cert)
    assert len(parsed.problems) == 1
    assert parsed.problems[0].index == 1
    assert parsed.problems[0].reason is FileReason.PARSE_ERROR


def test_only_corrupt_blocks_is_a_parse_error(tmp_path: Path) -> None:
    """A file whose only certificate block is corrupt reports parse_error, not a crash."""
    path = tmp_path / "broken.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert _reason(path) is FileReason.PARSE_ERROR


def test_der_certificate(pki: Pki, tmp_path: Path, caches: Caches) -> None:
    """A DER file yields its certificate."""
    leaf = pki.leaf(["der.example"])
    path = tmp_path / "leaf.der"
    path.write_bytes(leaf.der)
    assert read_certificate_file(path, caches).certificates == (leaf.cert,)


def test_pkcs12_with_password(pki: Pki, tmp_path: Path, caches: Caches) -> None:
    """A PKCS#12 archive opened with its password yields the leaf first, then its chain, and the key."""
    leaf = pki.leaf(["p12.example"])
    path = tmp_path / "leaf.p12"
    path.write_bytes(leaf.pkcs12(b"s3cret"))
    parsed = read_certificate_file(path, caches, password=b"s3cret")
    assert parsed.certificates == (leaf.cert, pki.intermediate.cert)
    assert parsed.keys == 1


def test_pkcs12_wrong_and_missing_password(pki: Pki, tmp_path: Path) -> None:
    """A wrong or missing password is reported as wrong_password, distinct from garbage."""
    path = tmp_path / "leaf.p12"
    path.write_bytes(pki.leaf(["p12.example"]).pkcs12(b"s3cret"))
    assert _reason(path, password=b"nope") is FileReason.WRONG_PASSWORD
    assert _reason(path) is FileReason.WRONG_PASSWORD


def test_pkcs12_without_password(pki: Pki, tmp_path: Path, caches: Caches) -> None:
    """An unencrypted PKCS#12 archive needs no password."""
    leaf = pki.leaf(["p12.example"])
    path = tmp_path / "plain.p12"
    path.write_bytes(leaf.pkcs12(None))
    assert read_certificate_file(path, caches).certificates[0] == leaf.cert


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", FileReason.EMPTY),
        (b"  \n\t\n", FileReason.EMPTY),
        (os.urandom(2048), FileReason.NO_CERTIFICATE),
        (b"hello, I am not a certificate\n", FileReason.NO_CERTIFICATE),
    ],
)
def test_files_without_certificates(tmp_path: Path, content: bytes, reason: FileReason) -> None:
    """Empty and garbage files report a reason from the fixed set."""
    path = tmp_path / "x.pem"
    path.write_bytes(content)
    assert _reason(path) is reason


def test_key_only_pem_has_no_certificate(pki: Pki, tmp_path: Path) -> None:
    """A PEM file holding only a private key is no_certificate."""
    path = tmp_path / "only.key"
    path.write_bytes(pki.leaf(["k.example"]).key_pem)
    assert _reason(path) is FileReason.NO_CERTIFICATE


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """A missing path is not_found; a directory is not_a_file."""
    assert _reason(tmp_path / "missing.pem") is FileReason.NOT_FOUND
    assert _reason(tmp_path / "missing-dir" / "x.pem") is FileReason.NOT_FOUND
    assert _reason(tmp_path) is FileReason.NOT_A_FILE


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO (nobody writing) is not_a_file immediately: the read never waits for a writer."""
    fifo = tmp_path / "pipe.pem"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert _reason(fifo) is FileReason.NOT_A_FILE
    assert time.monotonic() - started < 2


def test_symlink_loop(tmp_path: Path) -> None:
    """Two symlinks pointing at each other report symlink_loop."""
    (tmp_path / "a.pem").symlink_to(tmp_path / "b.pem")
    (tmp_path / "b.pem").symlink_to(tmp_path / "a.pem")
    assert _reason(tmp_path / "a.pem") is FileReason.SYMLINK_LOOP


def test_fifty_megabyte_file_is_not_read(tmp_path: Path, pki: Pki) -> None:
    """A 50 MB file is too_large (refused from its size, not read whole); a small limit applies too."""
    big = tmp_path / "big.pem"
    with big.open("wb") as fh:
        fh.write(pki.leaf(["big.example"]).pem)
        fh.seek(50 * 1024 * 1024)
        fh.write(b"\n")
    started = time.monotonic()
    assert _reason(big) is FileReason.TOO_LARGE
    assert time.monotonic() - started < 0.5
    small = tmp_path / "small.pem"
    small.write_bytes(pki.leaf(["s.example"]).pem)
    assert _reason(small, max_bytes=100) is FileReason.TOO_LARGE


def test_permission_denied_as_unprivileged_user(pki: Pki, caches: Caches) -> None:
    """A mode-000 file is permission_denied for a user who may not read it.

    Tests run as root, for whom mode bits do not stop a read, so the read happens in a forked child
    that dropped to uid/gid 65534 (nobody) first; its exit status carries the reason back.
    """
    assert os.geteuid() == 0, "this test drops privileges and needs to start as root"
    reasons = list(FileReason)
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # noqa: S103 -- nobody must reach the file so only its own mode denies
        secret = Path(tmp) / "secret.pem"
        secret.write_bytes(pki.leaf(["secret.example"]).pem)
        secret.chmod(0o000)
        pid = os.fork()
        if pid == 0:  # child: never return into pytest
            code = 100
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                read_certificate_file(secret, caches)
                code = 101
            except FileError as exc:
                code = reasons.index(exc.reason)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    assert reasons[os.WEXITSTATUS(status)] is FileReason.PERMISSION_DENIED


def test_facts_of_ecdsa_leaf(pki: Pki, caches: Caches) -> None:
    """Facts name the subject, issuer, SANs, dates (aware UTC), key, algorithm, fingerprint and links."""
    leaf = pki.leaf(["shop.example", "www.shop.example", "127.0.0.1", "::1"])
    f = facts(leaf.cert, caches)
    assert f.subject == "CN=shop.example"
    assert f.issuer == "CN=certloop test intermediate CA"
    assert f.dns_names == ("shop.example", "www.shop.example")
    assert f.ip_addresses == ("127.0.0.1", "::1")
    assert f.not_after.tzinfo is UTC and f.not_before.tzinfo is UTC
    assert f.not_after == leaf.cert.not_valid_after_utc
    assert (f.key_type, f.key_bits, f.signature_algorithm) == ("ecdsa", 256, "sha256-ecdsa")
    assert f.fingerprint_sha256 == leaf.fingerprint
    assert f.serial == format(leaf.cert.serial_number, "x")
    assert f.aki == facts(pki.intermediate.cert, caches).ski
    assert f.aki is not None
    assert not f.is_ca and not f.self_issued and not f.weak_crypto


def test_facts_of_rsa_root_and_intermediate(caches: Caches) -> None:
    """An RSA PKI: key size, sha256-rsa, the root self-issued CA, the intermediate a CA."""
    pki = Pki(key_kind="rsa2048")
    root, inter = facts(pki.root, caches), facts(pki.intermediate.cert, caches)
    assert (root.key_type, root.key_bits, root.signature_algorithm) == ("rsa", 2048, "sha256-rsa")
    assert root.is_ca and root.self_issued
    assert inter.is_ca and not inter.self_issued
    assert inter.signature_algorithm == "sha256-rsa"  # signed by the RSA root, though its own key is EC


def test_weak_crypto(pki: Pki, caches: Caches) -> None:
    """RSA < 2048 is weak; a normal leaf is not (SHA-1 signatures: test_verify, minted by openssl)."""
    assert facts(pki.leaf(["w.example"], key_kind="rsa1024").cert, caches).weak_crypto
    assert facts(pki.leaf(["w.example"], key_kind="rsa1024").cert, caches).key_bits == 1024
    assert not facts(pki.leaf(["ok.example"], key_kind="rsa2048").cert, caches).weak_crypto


def test_facts_of_ed25519(caches: Caches) -> None:
    """Ed25519 keys and signatures are named."""
    key = ed25519.Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    name = cx509.Name([cx509.NameAttribute(cx509.NameOID.COMMON_NAME, "ed")])
    cert = (
        cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(7).not_valid_before(now).not_valid_after(now + timedelta(days=1)).sign(key, None)
    )
    f = facts(cert, caches)
    assert (f.key_type, f.key_bits, f.signature_algorithm, f.serial) == ("ed25519", 256, "ed25519", "7")
    assert f.ski is None and f.aki is None and f.self_issued and not f.is_ca


def test_chain_roles(pki: Pki, caches: Caches) -> None:
    """Position 0 is the leaf; a self-issued CA at the end is the root; the rest are intermediates."""
    leaf = pki.leaf(["r.example"])
    assert chain_roles([leaf.cert, pki.intermediate.cert, pki.root], caches) == (
        Role.LEAF, Role.INTERMEDIATE, Role.ROOT,
    )
    assert chain_roles([leaf.cert, pki.intermediate.cert], caches) == (Role.LEAF, Role.INTERMEDIATE)
    assert chain_roles([pki.self_signed(["s.example"]).cert], caches) == (Role.LEAF,)
    assert chain_roles([], caches) == ()


def test_caches_return_the_same_objects(pki: Pki, caches: Caches) -> None:
    """Re-parsing an unchanged DER chain and re-asking facts reuse the first results."""
    leaf = pki.leaf(["c.example"])
    ders = [leaf.der, pki.intermediate.cert.public_bytes(serialization.Encoding.DER)]
    first, second = load_der_chain(ders, caches), load_der_chain([bytes(d) for d in ders], caches)
    assert first == second
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert facts(first[0], caches) is facts(second[0], caches)
    assert load_der_chain(ders, Caches())[0] is not first[0]  # what is remembered lives in the caches given


def test_parse_certificates_detects_format(pki: Pki, caches: Caches) -> None:
    """parse_certificates accepts PEM, DER and PKCS#12 blobs without being told which."""
    leaf = pki.leaf(["f.example"])
    assert parse_certificates(leaf.pem, caches).certificates == (leaf.cert,)
    assert parse_certificates(leaf.der, caches).certificates == (leaf.cert,)
    assert parse_certificates(leaf.pkcs12(b"pw"), caches, password=b"pw").certificates[0] == leaf.cert
    assert parse_pem(b"nothing here", caches).certificates == ()


def test_expired_and_self_signed_facts_still_parse(caches: Caches) -> None:
    """Certificates valid in the past parse with their real dates (facts never depend on validity)."""
    past = datetime(2001, 1, 1, tzinfo=UTC)
    pki = Pki(now=past)
    leaf = pki.leaf(["old.example"], days=10)
    f = facts(leaf.cert, caches)
    assert f.not_after == datetime(2001, 1, 11, tzinfo=UTC)
    key = pki.leaf(["x"]).key
    cert = build_cert(
        subject="v", key=key, issuer_cert=None, issuer_key=key, not_before=past,
        not_after=past + timedelta(days=1), ca=False,
    )
    assert facts(cert, caches).self_issued


def test_hostile_pem_is_parsed_in_linear_time(pki: Pki, caches: Caches) -> None:
    """Hundreds of thousands of unterminated BEGIN lines around a real certificate: the certificate is
    found, the unterminated blocks reported as problems, and four times the junk costs about four times
    the CPU (a parser quadratic in the BEGIN lines would cost sixteen). CPU time of this thread, best of
    two: the ratio holds on a loaded machine, where wall-clock budgets do not. The cyclic collector is off
    while timing: late in a full run its heap is large, and whether the larger input's allocations cross
    its threshold for a full collection (which once failed this test in CI) says nothing of the parser."""
    leaf = pki.leaf(["h.example"])

    def cost(blocks: int) -> float:
        junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n" * blocks
        spent = []
        for _ in range(2):
            gc.collect()
            gc.disable()
            try:
                started = time.thread_time()
                parsed = parse_certificates(junk[:100] + leaf.pem + junk, caches)
                spent.append(time.thread_time() - started)
            finally:
                gc.enable()
            assert parsed.certificates == (leaf.cert,)
            assert len(parsed.problems) >= blocks and parsed.problems[-1].detail == "no END line"
        return min(spent)

    small, large = cost(50_000), cost(200_000)
    assert large < 8 * small, (small, large)
