"""Issued material: the leaf, its intermediates and its private key, as the pipeline passes them on.

What an issuer returns, what the pipeline validates, seals into the data directory and installs. It is
the pipeline's vocabulary, not one issuer's: this module imports nothing from the renewer but its errors, so
the issuers below the pipeline and install beside it can all depend on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certloop.renewer.errors import IssuanceError

__all__ = ["IssuedMaterial", "split_pem"]


def split_pem(data: bytes) -> list[bytes]:
    """Split concatenated PEM certificates into one PEM block each (other blocks are dropped)."""
    out: list[bytes] = []
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    pos = 0
    while True:
        start = data.find(begin, pos)
        if start < 0:
            return out
        stop = data.find(end, start)
        if stop < 0:
            return out
        out.append(data[start : stop + len(end)] + b"\n")
        pos = stop + len(end)


@dataclass(frozen=True)
class IssuedMaterial:
    """A freshly issued certificate: leaf PEM, intermediates PEM (issuer first) and private key PEM."""

    cert_pem: bytes
    chain_pem: bytes
    key_pem: bytes

    @property
    def fullchain_pem(self) -> bytes:
        return self.cert_pem + self.chain_pem

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the leaf's DER, lowercase hex (what verify compares with the served leaf)."""
        der = x509.load_pem_x509_certificate(self.cert_pem).public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest()

    @classmethod
    def from_fullchain(cls, fullchain_pem: bytes, key_pem: bytes) -> IssuedMaterial:
        """Split a leaf-first full chain into leaf and intermediates."""
        blocks = split_pem(fullchain_pem)
        if not blocks:
            raise IssuanceError("the issuer produced no certificate")
        return cls(cert_pem=blocks[0], chain_pem=b"".join(blocks[1:]), key_pem=key_pem)

    @classmethod
    def from_files(
        cls, *, key: Path, cert: Path | None = None, chain: Path | None = None, fullchain: Path | None = None
    ) -> IssuedMaterial:
        """Read what a backend wrote; prefers ``fullchain``, else ``cert`` plus optional ``chain``."""
        try:
            key_pem = key.read_bytes()
            if fullchain is not None and fullchain.exists():
                return cls.from_fullchain(fullchain.read_bytes(), key_pem)
            if cert is None:
                raise IssuanceError("the issuer wrote neither a certificate nor a full chain")
            blocks = split_pem(cert.read_bytes())
            chain_blocks = split_pem(chain.read_bytes()) if chain is not None and chain.exists() else []
        except OSError as exc:
            raise IssuanceError(f"cannot read the issued material: {exc.strerror} ({exc.filename})") from exc
        if not blocks:
            raise IssuanceError(f"{cert} holds no certificate")
        # Some tools put the chain into the cert file too; anything after the leaf counts as chain.
        rest = chain_blocks or blocks[1:]
        return cls(cert_pem=blocks[0], chain_pem=b"".join(rest), key_pem=key_pem)
