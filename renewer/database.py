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

Deadlines: a store operation runs under the deadline of a :class:`renewer.deadline.Watchdog`. The engine
hands each checked-out connection to the watchdog (which aborts it with :func:`abort_connection` once the
deadline passes) and, for SQLite, shortens the lock wait to the time left. Connecting is bounded by the
drivers' own connect timeouts (libpq counts whole seconds, at least 2), and MariaDB/MySQL reads and
writes by PyMySQL's socket timeouts. A pooled server connection is pinged when it is checked out, under
the deadline (SQLAlchemy's own ``pool_pre_ping`` would ping before the watchdog knows the connection).
"""

from __future__ import annotations

import math
import os
import socket
import sqlite3
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from certloop.renewer.deadline import Watchdog
from certloop.renewer.errors import DeadlinePassed

__all__ = [
    "READ_ONLY",
    "TABLES",
    "abort_connection",
    "audit_events",
    "certificate_state",
    "create_engine",
    "job_events",
    "jobs",
    "metadata",
    "ratelimit_events",
    "redact_url",
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
audit_events = sa.Table(
    "audit_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(128)),  # the principal's name (never a secret); NULL: not authenticated
    sa.Column("role", sa.String(16)),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(255)),
    sa.Column("address", sa.String(64)),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("detail", sa.String(512)),
)
TABLES: tuple[sa.Table, ...] = (jobs, job_events, ratelimit_events, certificate_state, audit_events)

READ_ONLY = "certloop_read_only"  # execution option: a deferred (snapshot, no write lock) SQLite BEGIN


def redact_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(unparsable database URL)"


# Without a deadline (the CLI's migrations, backups, restores): how long connecting may take, and how long
# PyMySQL may wait on one read or write (its handshake is a read: nothing else bounds a silent server).
CONNECT_TIMEOUT = timedelta(seconds=10)
IO_TIMEOUT = timedelta(seconds=60)


def abort_connection(dbapi_conn: Any) -> None:
    """Make the driver's pending call on ``dbapi_conn`` fail now (called from the watchdog's thread).

    SQLite: ``interrupt()``, made for exactly this. psycopg: shut the socket down (a duplicate of its
    descriptor, so the driver still owns and closes its own); its wait returns at once and the
    connection is marked broken, which the pool discards. PyMySQL has no descriptor to reach and needs
    none: its socket timeouts already bound every read and write.

    A connection its thread closed meanwhile (the pool discarding it after an error) has nothing left to
    abort: the driver's own error for a closed connection (PEP 249's ``Connection.Error``) and the socket's
    (already shut down, descriptor gone) end the abort quietly. Anything else is a bug and propagates.
    """
    try:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.interrupt()
            return
        fileno = getattr(dbapi_conn, "fileno", None)
        if fileno is None:
            return
        with socket.socket(fileno=os.dup(fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, getattr(dbapi_conn, "Error", OSError)):
        return


def create_engine(
    url: str, busy_timeout: timedelta, *, timeout: timedelta | None = None, watchdog: Watchdog | None = None,
) -> Engine:
    """An engine for ``url``: SQLite with the pragmas and ``BEGIN`` described above, a server with a pool.

    ``timeout`` (one store operation's deadline) also bounds connecting; ``watchdog`` receives every
    checked-out connection.
    """
    if url.startswith("sqlite"):
        return _sqlite_engine(url, busy_timeout, watchdog)
    connect = timeout if timeout is not None else CONNECT_TIMEOUT
    args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        args["connect_timeout"] = max(2, math.ceil(connect.total_seconds()))  # libpq: whole seconds, >= 2
    elif url.startswith(("mysql", "mariadb")):
        args["connect_timeout"] = connect.total_seconds()
        args["read_timeout"] = args["write_timeout"] = (timeout or IO_TIMEOUT).total_seconds()
    engine = sa.create_engine(url, pool_size=8, max_overflow=16, pool_recycle=1800, connect_args=args)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info["fresh"] = True

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if watchdog is not None:
            watchdog.watch(dbapi_conn)
        if record.info.pop("fresh", False):
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            arm = watchdog.current() if watchdog is not None else None
            if arm is not None and arm.fired:
                raise DeadlinePassed("the database did not answer the ping") from exc
            # A stale connection (the server restarted): SQLAlchemy drops the pool and connects anew.
            raise sa.exc.InvalidatePoolError(f"ping failed: {exc}") from exc

    return engine


def _sqlite_engine(url: str, busy_timeout: timedelta, watchdog: Watchdog | None) -> Engine:
    busy_ms = int(busy_timeout.total_seconds() * 1000)
    engine = sa.create_engine(url, connect_args={"timeout": busy_timeout.total_seconds()})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's own handling is broken)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()
        record.info["busy_ms"] = busy_ms

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # interrupt() does not end a wait for the write lock: the lock wait is cut to the time left instead.
        arm = watchdog.current() if watchdog is not None else None
        wanted = busy_ms
        if arm is not None and watchdog is not None:
            watchdog.watch(dbapi_conn)
            wanted = max(1, min(busy_ms, int(arm.remaining() * 1000)))
        if record.info.get("busy_ms") != wanted:
            dbapi_conn.execute(f"PRAGMA busy_timeout={wanted}")
            record.info["busy_ms"] = wanted

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Single writer: claims cannot interleave. A read-only transaction (webhook duplicates) takes a
        # snapshot without the write lock.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
