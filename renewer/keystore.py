"""Encryption at rest for secrets the renewer keeps in its data directory (private keys, accounts).

AES-256-GCM from ``cryptography``. The 32-byte key comes from a file or an ``${ENV}`` reference
(through :func:`certloop.config.resolve_secret`), written as 64 hex digits or 44 base64 characters.
Each blob binds its certificate id and purpose as associated data, so a ciphertext copied onto
another certificate's file fails to open instead of installing the wrong key.

Blob layout: ``b"CLK1" || nonce(12) || ciphertext+tag``. Files are written atomically at 0600.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certloop.atomicfile import write_atomic
from certloop.config import resolve_secret
from certloop.renewer.errors import KeystoreError

__all__ = ["Keystore", "write_private"]

_MAGIC = b"CLK1"
_NONCE = 12


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise KeystoreError(where, "the keystore key must be 32 bytes as 64 hex digits or base64")
    return raw


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically write ``data`` to ``path`` with ``mode``, creating a private (0700) parent directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, data, mode=mode)


@dataclass(frozen=True)
class Keystore:
    """Seal and open secrets with one AES-256-GCM key."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise KeystoreError("", "the keystore key must be 32 bytes")

    @classmethod
    def from_secret(cls, value: str | None = None, file: str | os.PathLike[str] | None = None) -> Keystore:
        """From ``${ENV}`` / a literal (``value``) or a key file (``file``); config field ``keystore.key``."""
        where = f"keystore key file {file}" if file is not None else "keystore.key"
        return cls(_decode_key(resolve_secret(value, file, field="keystore.key"), where))

    @staticmethod
    def generate_key_file(path: Path) -> Path:
        """Create a new random key file (hex, 0600). Refuses to overwrite an existing one."""
        if path.exists():
            raise KeystoreError(str(path), "refusing to overwrite an existing key file")
        write_private(path, secrets.token_bytes(32).hex().encode() + b"\n")
        return path

    @staticmethod
    def _aad(certificate_id: str, purpose: str) -> bytes:
        return f"certloop/v1\0{certificate_id}\0{purpose}".encode()

    def seal(self, plaintext: bytes, *, certificate_id: str, purpose: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        ct = AESGCM(self.key).encrypt(nonce, plaintext, self._aad(certificate_id, purpose))
        return _MAGIC + nonce + ct

    def unseal(self, blob: bytes, *, certificate_id: str, purpose: str, where: str = "") -> bytes:
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _NONCE + 16:
            raise KeystoreError(where, "not a certloop sealed blob")
        nonce = blob[len(_MAGIC) : len(_MAGIC) + _NONCE]
        try:
            return AESGCM(self.key).decrypt(
                nonce, blob[len(_MAGIC) + _NONCE :], self._aad(certificate_id, purpose)
            )
        except InvalidTag as exc:
            raise KeystoreError(
                where, "cannot decrypt: wrong keystore key, tampered data, or bound to another certificate"
            ) from exc

    def write(self, path: Path, plaintext: bytes, *, certificate_id: str, purpose: str) -> None:
        """Seal ``plaintext`` and write it atomically to ``path`` at 0600."""
        write_private(path, self.seal(plaintext, certificate_id=certificate_id, purpose=purpose))

    def read(self, path: Path, *, certificate_id: str, purpose: str) -> bytes:
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise KeystoreError(str(path), f"cannot read: {exc.strerror}") from exc
        return self.unseal(blob, certificate_id=certificate_id, purpose=purpose, where=str(path))
