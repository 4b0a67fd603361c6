"""Mint certificates per test with `cryptography`: no long-lived real certificates are committed.

    pki = Pki()                                   # a root CA and an intermediate, valid for a year
    leaf = pki.leaf(["shop.example"], days=5)     # a leaf expiring in 5 days, issued by the intermediate
    leaf.write(tmp_path, "shop")                  # shop.crt (leaf), shop.key, shop.fullchain.pem, shop.chain.pem

Everything is timezone-aware UTC. `now` can be injected to build certificates relative to a fixed clock.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_key(kind: str = "ec256") -> PrivateKey:
    """`ec256`, `ec384`, `rsa2048`, `rsa3072`, `rsa4096`, `rsa1024` (weak, for tests of weak keys)."""
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise ValueError(kind)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Issued:
    """A certificate, its key and the chain above it (issuer first, root last, root excluded by default)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @property
    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    @property
    def fullchain_pem(self) -> bytes:
        return self.pem + self.chain_pem

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def pkcs12(self, password: bytes | None) -> bytes:
        """A PKCS#12 archive of the key, the certificate and its chain (no encryption when no password)."""
        from cryptography.hazmat.primitives.serialization import pkcs12

        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(b"certloop", self.key, self.cert, self.chain or None, encryption)

    def write(self, directory: Path, name: str) -> dict[str, Path]:
        """Write name.crt, name.key (0600), name.chain.pem and name.fullchain.pem; return the paths."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "cert": directory / f"{name}.crt",
            "key": directory / f"{name}.key",
            "chain": directory / f"{name}.chain.pem",
            "fullchain": directory / f"{name}.fullchain.pem",
        }
        paths["cert"].write_bytes(self.pem)
        paths["chain"].write_bytes(self.chain_pem)
        paths["fullchain"].write_bytes(self.fullchain_pem)
        fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.key_pem)
        return paths


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def build_cert(
    *,
    subject: str,
    key: PrivateKey,
    issuer_cert: x509.Certificate | None,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    not_before: datetime,
    not_after: datetime,
    ca: bool,
    names: Sequence[str] = (),
    path_length: int | None = None,
    hash_alg: hashes.HashAlgorithm | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_cert.subject if issuer_cert is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_cert is not None:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if names:
        builder = builder.add_extension(_san(names), critical=False)
    return builder.sign(issuer_key, hash_alg if hash_alg is not None else hashes.SHA256())


class Pki:
    """A root CA and one intermediate; issue leaves, extra intermediates and self-signed certificates."""

    def __init__(
        self,
        *,
        now: datetime | None = None,
        key_kind: str = "ec256",
        intermediate_days: int = 365,
        name: str = "certloop test",
    ) -> None:
        self.now = now or datetime.now(UTC)
        self.root_key = new_key(key_kind)
        self.root = build_cert(
            subject=f"{name} root CA", key=self.root_key, issuer_cert=None, issuer_key=self.root_key,
            not_before=self.now - timedelta(days=30), not_after=self.now + timedelta(days=3650), ca=True,
        )
        self.intermediate = self.issue_intermediate(days=intermediate_days, name=f"{name} intermediate CA")

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def write_root(self, path: Path) -> Path:
        path.write_bytes(self.root_pem)
        return path

    def issue_intermediate(self, *, days: int = 365, name: str = "intermediate CA", key_kind: str = "ec256") -> Issued:
        key = new_key(key_kind)
        cert = build_cert(
            subject=name, key=key, issuer_cert=self.root, issuer_key=self.root_key,
            not_before=self.now - timedelta(days=1), not_after=self.now + timedelta(days=days),
            ca=True, path_length=0,
        )
        return Issued(cert, key, [])

    def leaf(
        self,
        names: Sequence[str],
        *,
        days: float = 90,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        key_kind: str = "ec256",
        issuer: Issued | None = None,
        hash_alg: hashes.HashAlgorithm | None = None,
        cn: str | None = None,
    ) -> Issued:
        """A leaf for `names` issued by the intermediate (or `issuer`); chain = [issuer]."""
        inter = issuer or self.intermediate
        key = new_key(key_kind)
        nb = not_before or (self.now - timedelta(days=1))
        na = not_after or (self.now + timedelta(days=days))
        cert = build_cert(
            subject=cn or (names[0] if names else "leaf"), key=key, issuer_cert=inter.cert,
            issuer_key=inter.key, not_before=nb, not_after=na, ca=False, names=names, hash_alg=hash_alg,
        )
        return Issued(cert, key, [inter.cert])

    def client(self, cn: str, names: Sequence[str] = (), *, days: float = 30) -> Issued:
        """A client certificate (clientAuth EKU only) issued by the intermediate, for mTLS tests."""
        key = new_key("ec256")
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.intermediate.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(hours=1))
            .not_valid_after(self.now + timedelta(days=days))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if names:
            builder = builder.add_extension(_san(names), critical=False)
        return Issued(builder.sign(self.intermediate.key, hashes.SHA256()), key, [self.intermediate.cert])

    def self_signed(self, names: Sequence[str], *, days: float = 90, key_kind: str = "ec256") -> Issued:
        key = new_key(key_kind)
        cert = build_cert(
            subject=names[0], key=key, issuer_cert=None, issuer_key=key,
            not_before=self.now - timedelta(days=1), not_after=self.now + timedelta(days=days),
            ca=False, names=names,
        )
        return Issued(cert, key, [])


def openssl_sha1_leaf(issuer: Issued, names: Sequence[str], directory: Path, *, days: int = 30) -> x509.Certificate:
    """A SHA-1 signed leaf (valid from the real now), made by `openssl x509` because cryptography refuses
    to sign with SHA-1. For tests of weak crypto only."""
    import subprocess

    directory.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = directory / "sha1-ca.crt", directory / "sha1-ca.key"
    ca_crt.write_bytes(issuer.cert.public_bytes(serialization.Encoding.PEM))
    ca_key.write_bytes(key_pem(issuer.key))
    key = new_key("ec256")
    csr = (
        x509.CertificateSigningRequestBuilder().subject_name(_name(names[0])).sign(key, hashes.SHA256())
    )
    (directory / "sha1.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    sans = ",".join(f"IP:{n}" if _is_ip(n) else f"DNS:{n}" for n in names)
    (directory / "sha1.ext").write_text(
        f"subjectAltName={sans}\nauthorityKeyIdentifier=keyid\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    subprocess.run(
        ["openssl", "x509", "-req", "-sha1", "-in", str(directory / "sha1.csr"), "-CA", str(ca_crt),
         "-CAkey", str(ca_key), "-days", str(days), "-extfile", str(directory / "sha1.ext"),
         "-out", str(directory / "sha1.crt")],
        check=True, capture_output=True, timeout=30,
    )
    return x509.load_pem_x509_certificate((directory / "sha1.crt").read_bytes())


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
