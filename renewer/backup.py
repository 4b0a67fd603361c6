"""``certloop renewer backup --out FILE`` / ``restore --in FILE``: an encrypted, portable archive.

The archive holds every row of the job store as JSON (so a SQLite backup restores into PostgreSQL
and back) and every file of the data directory except the SQLite database itself and staging
areas and install journals (it holds the keystore key, sealed material, issuer accounts and homes).

Layout: ``b"CLB2" || mode || salt(16) || check(16) || nonce(12) || AES-256-GCM(zlib(json))``. ``mode``
``k``: the keystore key encrypts it (keep that key elsewhere!); ``p``: a key derived with scrypt from the
passphrase file. ``check`` is HMAC-SHA256(key, salt) cut to 16 bytes: it tells a wrong key
(:class:`WrongKey`) from an altered file (:class:`ArchiveDamaged`), which GCM alone cannot, so that
``backup verify`` can say which one happened. The header is authenticated as associated data.
Archives of the first layout (``CLB1``, no check) are still read; for them the two causes stay one error.

What must stay true: :func:`seal` and :func:`unseal` are pure functions of bytes, so the same archive
travels through a file or an S3 object (:mod:`renewer.backupsite`) unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from certloop.renewer.errors import ArchiveDamaged, BackupError, WrongKey
from certloop.renewer.keystore import write_private
from certloop.renewer.store import Store

__all__ = [ "Restored", "make_backup", "read_backup", "restore_backup",
    "seal", "unseal", "write_backup",
]

_MAGIC_V1 = b"CLB1"
_MAGIC = b"CLB2"
_TAG = 16
FORMAT = "certloop-renewer-backup/1"
# staging: temporary issuer output. journal: an install in flight when the archive was made; replayed
# after a restore it would copy that moment's `.certloop-prev` files over certificates renewed since.
_SKIP_DIRS = {"staging", "journal"}


def _skip(rel: Path, db_file: Path | None) -> bool:
    if rel.parts and rel.parts[0] in _SKIP_DIRS:
        return True
    return db_file is not None and rel.name.startswith(db_file.name)


def _db_file(store: Store, data_dir: Path) -> Path | None:
    db = store.engine.url.database if store.engine.dialect.name == "sqlite" else None
    if not db:
        return None
    path = Path(db).resolve()
    return path if path.parent == data_dir.resolve() else None


def make_backup(store: Store, data_dir: Path, now: datetime) -> dict[str, Any]:
    """The archive's plaintext document: database rows and data-dir files."""
    db_file = _db_file(store, data_dir)
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        if not path.is_file() or path.is_symlink() or _skip(rel, db_file):
            continue
        files[rel.as_posix()] = {"mode": path.stat().st_mode & 0o777,
                                 "data": base64.b64encode(path.read_bytes()).decode("ascii")}
    return {"format": FORMAT, "created_at": now.isoformat(), "database": store.dump(), "files": files}


def _key(mode: bytes, salt: bytes, *, key: bytes | None, passphrase: bytes | None) -> bytes:
    if mode == b"p":
        if passphrase is None:
            raise BackupError("", "this archive is protected by a passphrase: give --passphrase-file")
        return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase)
    if key is None:
        raise BackupError("", "this archive is encrypted with the keystore key: configure the keystore")
    return key


def _check(secret: bytes, salt: bytes) -> bytes:
    return hmac.new(secret, b"certloop-backup-key-check" + salt, hashlib.sha256).digest()[:16]


def seal(doc: dict[str, Any], *, key: bytes | None = None, passphrase: bytes | None = None) -> bytes:
    """The encrypted archive of ``doc``, with the passphrase if given, else the keystore key."""
    mode = b"p" if passphrase is not None else b"k"
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    secret = _key(mode, salt, key=key, passphrase=passphrase)
    header = _MAGIC + mode + salt + _check(secret, salt)
    plaintext = zlib.compress(json.dumps(doc, sort_keys=True).encode(), 6)
    return header + nonce + AESGCM(secret).encrypt(nonce, plaintext, header)


def unseal(blob: bytes, name: str, *, key: bytes | None = None, passphrase: bytes | None = None) -> dict[str, Any]:
    """The document inside an archive; ``name`` (a path or URL) only labels errors.

    Raises :class:`WrongKey` when the key check fails, :class:`ArchiveDamaged` when the bytes are not an
    intact archive, :class:`BackupError` when the archive needs a secret that was not given.
    """
    magic = blob[:4]
    header_len = {_MAGIC: 4 + 1 + 16 + 16, _MAGIC_V1: 4 + 1 + 16}.get(magic)
    if header_len is None or len(blob) < header_len + 12 + _TAG:
        raise ArchiveDamaged(name, "not a certloop renewer backup (wrong magic bytes or truncated)")
    mode, salt = blob[4:5], blob[5:21]
    if mode not in (b"k", b"p"):
        raise ArchiveDamaged(name, "not a certloop renewer backup (unknown encryption mode)")
    header, nonce = blob[:header_len], blob[header_len:header_len + 12]
    secret = _key(mode, salt, key=key, passphrase=passphrase)
    if magic == _MAGIC and not hmac.compare_digest(_check(secret, salt), blob[21:37]):
        raise WrongKey(name, "cannot decrypt: wrong key or passphrase")
    try:
        plaintext = AESGCM(secret).decrypt(nonce, blob[header_len + 12:], header)
    except InvalidTag as exc:
        if magic == _MAGIC_V1:
            raise WrongKey(name, "cannot decrypt: wrong key or passphrase, or the file was altered") from exc
        raise ArchiveDamaged(name, "the archive was altered or damaged: the key is right, the content fails "
                                   "its integrity check") from exc
    try:
        doc = json.loads(zlib.decompress(plaintext))
    except (zlib.error, ValueError) as exc:  # authenticated, so only a foreign writer gets here
        raise ArchiveDamaged(name, "the decrypted content is not a compressed JSON document") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ArchiveDamaged(name, f"unknown archive format (expected {FORMAT})")
    if not isinstance(doc.get("database"), dict) or not isinstance(doc.get("files"), dict):
        raise ArchiveDamaged(name, "the archive lacks its `database` or `files` section")
    return doc


def write_backup(doc: dict[str, Any], out: Path, *, key: bytes | None = None, passphrase: bytes | None = None) -> None:
    """Encrypt ``doc`` to ``out`` (0600, atomic) with the passphrase if given, else the keystore key."""
    write_private(out, seal(doc, key=key, passphrase=passphrase))


def read_backup(path: Path, *, key: bytes | None = None, passphrase: bytes | None = None) -> dict[str, Any]:
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise BackupError(str(path), f"cannot read: {exc.strerror}") from exc
    return unseal(blob, str(path), key=key, passphrase=passphrase)


@dataclass(frozen=True)
class Restored:
    rows: dict[str, int]
    files: int


def restore_backup(doc: dict[str, Any], store: Store, data_dir: Path, *, overwrite: bool = False) -> Restored:
    """Write the archive's files into ``data_dir`` and its rows into ``store`` (migrated to head).

    Refuses a database that already holds jobs unless ``overwrite``.
    """
    if not overwrite and any(store.dump()["jobs"]):
        raise BackupError("", "the target database already holds jobs; restore into a fresh one (or --force)")
    root = data_dir.resolve()
    written = 0
    for rel, entry in doc["files"].items():
        if _skip(Path(rel), None):  # archives from before journals were left out
            continue
        target = (root / rel).resolve()
        if root not in target.parents:
            raise BackupError(rel, "archive entry points outside the data directory")
        write_private(target, base64.b64decode(entry["data"]), mode=int(entry["mode"]) & 0o700 or 0o600)
        written += 1
    rows = store.restore(doc["database"])
    os.sync()
    return Restored(rows, written)
