"""Seed the compose `demo` profile: run once, before pebble and nginx start (idempotent).

Writes, into the directories given:
- ``pki/pebble-ca.pem``, ``pki/pebble.pem``, ``pki/pebble.key``: pebble's HTTPS identity (the
  pebble image's bundled test certificate is not relied upon); the renewer trusts ``pebble-ca.pem``.
- ``tls/shop.pem``, ``tls/shop.key``: a self-signed certificate for shop.example that expires in
  one hour, so nginx can start and the loop has something to renew right away.

    python seed.py /srv/certloop/demo-pki /srv/certloop/tls
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
          issuer_key: ec.EllipticCurvePrivateKey, sans: list[str], ca: bool, start: datetime,
          end: datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


def main(pki_dir: Path, tls_dir: Path) -> None:
    now = datetime.now(UTC)
    if not (pki_dir / "pebble.pem").exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("certloop demo pebble CA", ca_key, None, ca_key, [], True, now, now + timedelta(days=3650))
        key = ec.generate_private_key(ec.SECP256R1())
        server = _cert("pebble", key, ca, ca_key, ["pebble", "localhost"], False, now, now + timedelta(days=3650))
        _write(pki_dir / "pebble-ca.pem", ca.public_bytes(serialization.Encoding.PEM), 0o644)
        _write(pki_dir / "pebble.key", _key_pem(key), 0o644)  # read by the pebble container's own user
        _write(pki_dir / "pebble.pem", server.public_bytes(serialization.Encoding.PEM), 0o644)
    if not (tls_dir / "shop.pem").exists():
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _cert("shop.example", key, None, key, ["shop.example"], False,
                     now - timedelta(hours=23), now + timedelta(hours=1))
        _write(tls_dir / "shop.key", _key_pem(key), 0o640)
        _write(tls_dir / "shop.pem", leaf.public_bytes(serialization.Encoding.PEM), 0o644)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
