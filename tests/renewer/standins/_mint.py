"""Shared by the stand-ins: record argv, mint a leaf from the test CA in $CERTLOOP_STANDIN_CA_DIR.

The CA dir holds ``ca.pem`` and ``ca.key`` (an intermediate from tests/support/pki.py), written by
the test. Nothing here talks to a network: the stand-ins replace tools that cannot be installed.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.pki import build_cert, key_pem, new_key


def record(tool: str, argv: list[str], **extra: object) -> None:
    path = os.environ.get("CERTLOOP_STANDIN_RECORD")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"tool": tool, "argv": argv, **extra}) + "\n")


def mint(names: list[str], key_kind: str = "ec256", days: float = 30) -> tuple[bytes, bytes, bytes]:
    """(leaf PEM, key PEM, issuer PEM) for ``names`` from the test CA."""
    ca_dir = Path(os.environ["CERTLOOP_STANDIN_CA_DIR"])
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    key = new_key(key_kind)
    now = datetime.now(UTC)
    cert = build_cert(
        subject=names[0], key=key, issuer_cert=ca, issuer_key=ca_key,  # type: ignore[arg-type]
        not_before=now - timedelta(minutes=5), not_after=now + timedelta(days=days), ca=False, names=names,
    )
    pem = serialization.Encoding.PEM
    return cert.public_bytes(pem), key_pem(key), ca.public_bytes(pem)


def names_in(cert_path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]
