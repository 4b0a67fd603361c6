"""Secrets every replica of one renewer shares, kept in its database (the ``shared_secrets`` table).

    key = shared_secret(store, "csrf", now)     # 32 random bytes, the same in every process on this database

Why the database and not a file: it is the one thing every replica already shares, so this works with
no configuration on one box (the SQLite file in ``data_dir``) and across PostgreSQL or MariaDB replicas
behind one load balancer, and it survives restarts. A secret file would need copying to every replica.

What must stay true:

- the first process to ask creates the row; any number asking at once agree on one value. The insert is
  "insert if absent, then read": a replica that loses the race gets a unique-key violation, ignores it
  and reads the winner's row (no check-then-insert window, on any of the three engines);
- the value never leaves the process: it is not logged, not in backups (``database.TABLES`` does not list
  the table: a restored database simply draws a new one, which only makes open forms stale) and not
  served. Rotate it by deleting the row and restarting every replica.
"""

from __future__ import annotations

import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from certloop.renewer.records import to_ms
from certloop.renewer.store import Store

__all__ = ["SECRET_BYTES", "shared_secret", "shared_secrets"]

SECRET_BYTES = 32

# Mirrors migration 0003 (the migrations own the schema, like renewer.database's tables).
shared_secrets = sa.Table(
    "shared_secrets", sa.MetaData(),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(128), nullable=False),  # hex
    sa.Column("created_at", sa.BigInteger, nullable=False),
)


def shared_secret(store: Store, name: str, now: datetime) -> bytes:
    """The secret called ``name``, created on first use (see the module docstring). Blocking: run it with
    ``store.call``. StoreUnavailable when the database cannot be reached."""
    found = _read(store, name)
    if found is None:
        try:
            with store.transaction("shared_secret") as conn:
                conn.execute(shared_secrets.insert().values(
                    name=name, value=secrets.token_hex(SECRET_BYTES), created_at=to_ms(now)))
        except IntegrityError:
            pass  # another replica inserted it first: its value is the one read below
        found = _read(store, name)
        if found is None:  # only if someone deleted the row between our insert and this read
            raise RuntimeError(f"shared secret {name!r} vanished while it was created")
    return bytes.fromhex(found)


def _read(store: Store, name: str) -> str | None:
    with store.transaction("shared_secret") as conn:
        value = conn.execute(sa.select(shared_secrets.c.value).where(shared_secrets.c.name == name)).scalar()
    return None if value is None else str(value)
