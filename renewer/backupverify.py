"""``certloop renewer backup verify``: prove an archive restores, without touching the live renewer.

An archive is verified in three steps, each a reason to fail on its own:

1. it decrypts with the given key or passphrase and passes its integrity check (:func:`renewer.backup.unseal`);
2. it restores into a scratch database (a temporary SQLite file, or a PostgreSQL database created for
   the purpose and dropped afterwards) and a scratch data directory, with the very code ``restore`` uses;
3. what the scratch database and directory then hold equals what the archive lists: the row count of
   every table, and every file byte for byte (by SHA-256).

What must stay true: the scratch places are private to one run and removed afterwards, also on
failure; the live database and ``data_dir`` are never opened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from certloop.renewer import migrations
from certloop.renewer.backup import restore_backup
from certloop.renewer.database import TABLES
from certloop.renewer.errors import ArchiveDamaged, BackupError, Mismatch
from certloop.renewer.store import Store

__all__ = ["Verified", "check_restored", "scratch_postgresql", "verify_backup"]


@dataclass(frozen=True)
class Verified:
    rows: dict[str, int]
    files: int
    database: str  # the dialect the archive was restored into


def _expected_files(doc: dict[str, Any], name: str) -> dict[str, str]:
    """Archive file name -> SHA-256 of its content; a malformed entry is damage."""
    digests = {}
    for rel, entry in doc["files"].items():
        try:
            digests[rel] = hashlib.sha256(base64.b64decode(entry["data"], validate=True)).hexdigest()
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ArchiveDamaged(name, f"file entry {rel!r} is malformed") from exc
    return digests


def check_restored(doc: dict[str, Any], name: str, store: Store, data_dir: Path) -> Verified:
    """Step 3: compare a restored store and directory with the archive's document."""
    expected_rows = {t.name: len(doc["database"].get(t.name, [])) for t in TABLES}
    restored_rows = {table: len(rows) for table, rows in store.dump().items()}
    problems = [f"table {t}: archive has {n} rows, scratch database has {restored_rows.get(t, 0)}"
                for t, n in expected_rows.items() if restored_rows.get(t, 0) != n]
    unknown = sorted(set(doc["database"]) - set(expected_rows))
    problems += [f"table {t}: in the archive but unknown to this renewer" for t in unknown]
    expected_files = _expected_files(doc, name)
    for rel, digest in sorted(expected_files.items()):
        path = data_dir / rel
        if rel.split("/", 1)[0] in {"staging", "journal"}:
            continue  # restore ignores these on purpose (see renewer.backup)
        if not path.is_file():
            problems.append(f"file {rel}: missing after restore")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"file {rel}: restored content differs from the archive")
    extra = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*")
                   if p.is_file() and p.relative_to(data_dir).as_posix() not in expected_files)
    problems += [f"file {rel}: restored but not in the archive" for rel in extra]
    if problems:
        raise Mismatch(name, "; ".join(problems))
    restored_files = sum(1 for p in data_dir.rglob("*") if p.is_file())
    return Verified(expected_rows, restored_files, store.engine.dialect.name)


@contextmanager
def scratch_postgresql(server_url: str) -> Iterator[str]:
    """A new, uniquely named database on the PostgreSQL server of ``server_url``, dropped on exit."""
    url = sa.make_url(server_url)
    if not url.drivername.startswith("postgresql"):
        raise BackupError(server_url, "--scratch-database must be a postgresql:// URL")
    name = f"certloop_verify_{secrets.token_hex(6)}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.SQLAlchemyError as exc:
            raise BackupError(url.render_as_string(hide_password=True),
                              f"cannot create the scratch database: {exc.__class__.__name__}") from exc
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def verify_backup(doc: dict[str, Any], name: str, *, scratch_server: str | None = None) -> Verified:
    """Restore ``doc`` (already unsealed) into scratch places and compare; raise :class:`Mismatch` if they differ."""
    _expected_files(doc, name)  # damage in a file entry is reported as damage, before any restore
    with tempfile.TemporaryDirectory(prefix="certloop-verify-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        with _scratch_url(Path(tmp), scratch_server) as url:
            store = Store(url)
            try:
                migrations.upgrade(store.engine)
                restore_backup(doc, store, data_dir)
                return check_restored(doc, name, store, data_dir)
            finally:
                store.close()


@contextmanager
def _scratch_url(tmp: Path, scratch_server: str | None) -> Iterator[str]:
    if scratch_server is None:
        yield f"sqlite:///{tmp / 'scratch.db'}"
    else:
        with scratch_postgresql(scratch_server) as url:
            yield url
