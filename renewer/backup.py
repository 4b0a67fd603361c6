"""``certloop renewer backup --out FILE`` / ``restore --in FILE``: an encrypted, portable archive.

The archive holds every row of the job store as JSON (so a SQLite backup restores into PostgreSQL
and back) and every file of the data directory except the SQLite database itself and staging
areas and install journals (it holds the keystore key, sealed material, issuer accounts and homes).

Layout: ``b"CLB1" || mode || salt(16) || nonce(12) || AES-256-GCM(zlib(json))``. ``mode`` ``k``: the
keystore key encrypts it (keep that key elsewhere!); ``p``: a key derived with scrypt from the
passphrase file. The header is authenticated as associated data.
"""

from __future__ import annotations

import base64
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

from renewer.errors import RenewerError
from renewer.keystore import write_private
from renewer.store import Store

__all__ = ["BackupError", "Restored", "make_backup", "read_backup", "restore_backup", "write_backup"]

_MAGIC = b"CLB1"
FORMAT = "certloop-renewer-backup/1"
# staging: temporary issuer output. journal: an install in flight when the archive was made; replayed
# after a restore it would copy that moment's `.certloop-prev` files over certificates renewed since.
_SKIP_DIRS = {"staging", "journal"}


class BackupError(RenewerError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


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


def write_backup(doc: dict[str, Any], out: Path, *, key: bytes | None = None, passphrase: bytes | None = None) -> None:
    """Encrypt ``doc`` to ``out`` (0600, atomic) with the passphrase if given, else the keystore key."""
    mode = b"p" if passphrase is not None else b"k"
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = _MAGIC + mode + salt
    secret = _key(mode, salt, key=key, passphrase=passphrase)
    plaintext = zlib.compress(json.dumps(doc, sort_keys=True).encode(), 6)
    write_private(out, header + nonce + AESGCM(secret).encrypt(nonce, plaintext, header))


def read_backup(path: Path, *, key: bytes | None = None, passphrase: bytes | None = None) -> dict[str, Any]:
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise BackupError(str(path), f"cannot read: {exc.strerror}") from exc
    if not blob.startswith(_MAGIC) or len(blob) < 4 + 1 + 16 + 12 + 16:
        raise BackupError(str(path), "not a certloop renewer backup")
    mode, salt = blob[4:5], blob[5:21]
    header, nonce = blob[:21], blob[21:33]
    secret = _key(mode, salt, key=key, passphrase=passphrase)
    try:
        doc = json.loads(zlib.decompress(AESGCM(secret).decrypt(nonce, blob[33:], header)))
    except InvalidTag as exc:
        raise BackupError(str(path), "cannot decrypt: wrong key or passphrase, or the file was altered") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError(str(path), f"unknown archive format (expected {FORMAT})")
    return doc


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
