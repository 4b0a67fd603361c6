"""The job store's database: its tables, and an engine set up for each of the three engines.

    engine = create_engine("sqlite:////var/lib/certloop-renewer/renewer.db", busy_timeout=timedelta(seconds=10))
    conn.execute(sa.select(jobs).where(jobs.c.active_key.is_not(None)))

The schema is owned by the Alembic migrations in :mod:`renewer.migrations`; the tables below mirror them
for queries (:class:`renewer.store.Store`); :data:`TABLES` lists them parents first, the order a restore
inserts in. Times are integer epoch milliseconds.

SQLite durability: WAL with ``synchronous=NORMAL``. A commit is in the WAL (written to the OS) before it
returns, so it survives a crash of the process (kill -9); only the checkpoints fsync. A power loss or
kernel crash can lose the last commits since then (never corrupt the file). What that can cost: a webhook
answered 202 whose job vanished (Alertmanager's repeat notification and the safety net queue it again) or
a job state rolled back a step (the job is resumed or retried; live files have their own fsynced journal).
FULL would fsync every commit, on the webhook's path, to protect against exactly that; not worth it here.
SQLite has one writer, taken at ``BEGIN IMMEDIATE``; a transaction run with the :data:`READ_ONLY` execution
option begins deferred instead (a snapshot, no write lock). PostgreSQL and MariaDB/MySQL get a pool.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

__all__ = [
    "READ_ONLY",
    "TABLES",
    "certificate_state",
    "create_engine",
    "job_events",
    "jobs",
    "metadata",
    "ratelimit_events",
]

metadata = sa.MetaData()
jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("certificate", sa.String(64), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(512), nullable=False),
    sa.Column("force", sa.Boolean, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("deploy_attempt", sa.Integer, nullable=False),
    sa.Column("not_before", sa.BigInteger, nullable=False),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires", sa.BigInteger),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("last_error", sa.Text),
    sa.Column("material_ref", sa.String(255)),
    sa.Column("active_key", sa.String(64), unique=True),
)
job_events = sa.Table(
    "job_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("from_state", sa.String(16)),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(128)),
)
ratelimit_events = sa.Table(
    "ratelimit_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issuer", sa.String(255), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("job_id", sa.Integer),
)
certificate_state = sa.Table(
    "certificate_state", metadata,
    sa.Column("certificate", sa.String(64), primary_key=True),
    sa.Column("not_after", sa.BigInteger),
    sa.Column("next_due", sa.BigInteger),
    sa.Column("last_attempt_at", sa.BigInteger),
    sa.Column("last_success_at", sa.BigInteger),
    sa.Column("last_result", sa.String(16)),
    sa.Column("last_error", sa.Text),
    sa.Column("last_job_id", sa.Integer),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
TABLES: tuple[sa.Table, ...] = (jobs, job_events, ratelimit_events, certificate_state)

READ_ONLY = "certloop_read_only"  # execution option: a deferred (snapshot, no write lock) SQLite BEGIN


def create_engine(url: str, busy_timeout: timedelta) -> Engine:
    """An engine for ``url``: SQLite with the pragmas and ``BEGIN`` described above, a server with a pool."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": busy_timeout.total_seconds()})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's own handling is broken)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout.total_seconds() * 1000)}")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Single writer: claims cannot interleave. A read-only transaction (webhook duplicates) takes a
            # snapshot without the write lock.
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16, pool_recycle=1800)
