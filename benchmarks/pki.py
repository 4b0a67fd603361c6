"""Certificates for the benchmark targets, minted fast: one CA, one leaf key per key type, many leaves.

Key generation dominates minting (an RSA-2048 key takes ~50 ms); leaves that share a key cost a
signature each, so 10,000 distinct certificates take seconds. Handshake cost depends on the key
type, not on whether keys are shared, so sharing keeps the measurement honest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyKind = Literal["ecdsa", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Issued:
    """One leaf on disk: ``chain_path`` holds leaf + CA, ``key_path`` the (shared) private key."""

    name: str
    chain_path: Path
    key_path: Path


class Minter:
    """A throwaway CA that signs leaves for ``*.bench`` names into ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.now = datetime.now(UTC)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certloop benchmark CA")])
        self.ca = (
            x509.CertificateBuilder().subject_name(self.ca_name).issuer_name(self.ca_name)
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(days=1)).not_valid_after(self.now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_pem = self.ca.public_bytes(_PEM)
        self.ca_path = directory / "ca.pem"
        self.ca_path.write_bytes(self.ca_pem)
        self._keys: dict[KeyKind, tuple[PrivateKey, Path]] = {}
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key())

    def key(self, kind: KeyKind) -> tuple[PrivateKey, Path]:
        """The shared leaf key of ``kind`` and its PEM file (created once)."""
        if kind not in self._keys:
            key: PrivateKey = (
                ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa"
                else rsa.generate_private_key(public_exponent=65537, key_size=2048)
            )
            path = self.directory / f"leaf-{kind}.key"
            path.write_bytes(key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            path.chmod(0o600)
            self._keys[kind] = (key, path)
        return self._keys[kind]

    def leaf_pem(self, name: str, kind: KeyKind, *, days: int = 90) -> bytes:
        """A leaf for ``name`` signed by the CA, as PEM (leaf only)."""
        key, _ = self.key(kind)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(days=1)).not_valid_after(self.now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(self._aki, critical=False)  # as every public CA's leaf has (and Web PKI requires)
            .sign(self.ca_key, hashes.SHA256())
        )
        return leaf.public_bytes(_PEM)

    def issue(self, name: str, kind: KeyKind) -> Issued:
        """Write ``<name>.pem`` (leaf + CA) for ``name``; the key file is the shared one of ``kind``."""
        _, key_path = self.key(kind)
        path = self.directory / f"{name}-{kind}.pem"
        path.write_bytes(self.leaf_pem(name, kind) + self.ca_pem)
        return Issued(name, path, key_path)

    def issue_many(self, names: list[str], kind: KeyKind) -> Iterator[Issued]:
        for name in names:
            yield self.issue(name, kind)


def bench_names(n: int) -> list[str]:
    """``n`` distinct host names under the reserved-for-us ``.bench`` suffix."""
    return [f"site{i:05d}.bench" for i in range(n)]
