"""The job store: jobs, their audit trail, the rate-limit ledger and per-certificate state.

SQLAlchemy Core over SQLite (default, WAL, one writer at a time via ``BEGIN IMMEDIATE``), PostgreSQL or
MariaDB/MySQL (replicas: claiming with ``SELECT ... FOR UPDATE SKIP LOCKED``). The schema is owned by
the Alembic migrations in :mod:`renewer.migrations`; the tables below mirror them for queries.

One open job per certificate is a database fact, not a check-then-insert: ``jobs.active_key`` holds the
certificate id while a job is open and NULL once it is finished, under a unique constraint. Webhook
deliveries arrive in batches (:meth:`Store.enqueue_many`): one lookup and one commit per batch.

SQLite durability: WAL with ``synchronous=NORMAL``. A commit is in the WAL (written to the OS) before it
returns, so it survives a crash of the process (kill -9); only the checkpoints fsync. A power loss or
kernel crash can lose the last commits since then (never corrupt the file). What that can cost: a webhook
answered 202 whose job vanished (Alertmanager's repeat notification and the safety net queue it again) or
a job state rolled back a step (the job is resumed or retried; live files have their own fsynced journal).
FULL would fsync every commit, on the webhook's path, to protect against exactly that; not worth it here.

Times are aware UTC datetimes at this API and integer epoch milliseconds in the database (portable
across the three engines and exact). Every state change writes a ``job_events`` row in the same
transaction. Database driver errors become :class:`StoreUnavailable` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from renewer.errors import RenewerError

__all__ = [
    "OPEN_STATES",
    "TERMINAL_STATES",
    "CertificateState",
    "EnqueueItem",
    "Enqueued",
    "Job",
    "JobEvent",
    "LedgerEvent",
    "QueueStats",
    "State",
    "Store",
    "StoreUnavailable",
    "from_ms",
    "to_ms",
]

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class State(StrEnum):
    QUEUED = "queued"
    ISSUING = "issuing"
    INSTALLING = "installing"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


OPEN_STATES = frozenset({State.QUEUED, State.ISSUING, State.INSTALLING, State.VERIFYING})
TERMINAL_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.ROLLED_BACK})


class StoreUnavailable(RenewerError):
    """The database cannot be reached or refused the operation; the caller may retry later."""

    def __init__(self, operation: str, detail: str) -> None:
        self.operation = operation
        self.detail = detail
        super().__init__(f"job store unavailable during {operation}: {detail}")


def to_ms(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("naive datetime: certloop uses aware UTC everywhere")
    return int(when.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


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

# The webhook's one lookup per batch, built once (its cache key is memoized): open jobs and last successes
# of the named certificates. Rows: (certificate, open job id, NULL) and (certificate, NULL, last success ms).
_NAMES: sa.BindParameter[list[str]] = sa.bindparam("names", expanding=True)
_LOOKUP = sa.union_all(
    sa.select(jobs.c.active_key, jobs.c.id, sa.cast(sa.null(), sa.BigInteger)).where(jobs.c.active_key.in_(_NAMES)),
    sa.select(certificate_state.c.certificate, sa.cast(sa.null(), sa.Integer), certificate_state.c.last_success_at)
    .where(certificate_state.c.certificate.in_(_NAMES), certificate_state.c.last_success_at.is_not(None)),
)


@dataclass(frozen=True)
class Job:
    id: int
    certificate: str
    trigger: str
    reason: str
    force: bool
    state: State
    attempt: int
    deploy_attempt: int
    not_before: datetime
    lease_owner: str | None
    lease_expires: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    last_error: str | None
    material_ref: str | None

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in out.items()}


@dataclass(frozen=True)
class JobEvent:
    job_id: int
    from_state: str | None
    to_state: str
    at: datetime
    reason: str
    actor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"from_state": self.from_state, "to_state": self.to_state, "at": self.at.isoformat(),
                "reason": self.reason, "actor": self.actor}


@dataclass(frozen=True)
class Enqueued:
    """Outcome of :meth:`Store.enqueue`: ``created`` False means an open job already existed (``job_id``),
    or the certificate was renewed after ``alert_started`` (``job_id`` None)."""

    job_id: int | None
    created: bool


@dataclass(frozen=True)
class EnqueueItem:
    """One enqueue of a batch (:meth:`Store.enqueue_many`); the arguments of :meth:`Store.enqueue`."""

    certificate: str
    trigger: str
    reason: str
    now: datetime
    alert_started: datetime | None = None
    actor: str | None = None


@dataclass(frozen=True)
class LedgerEvent:
    issuer: str
    scope: str
    key: str
    at: datetime
    job_id: int | None = None


@dataclass(frozen=True)
class QueueStats:
    queued: int
    in_progress: int
    oldest_queued: datetime | None


@dataclass(frozen=True)
class CertificateState:
    certificate: str
    not_after: datetime | None = None
    next_due: datetime | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    last_result: str | None = None
    last_error: str | None = None
    last_job_id: int | None = None


_TIME_COLS = frozenset({"not_before", "lease_expires", "created_at", "updated_at", "started_at"})


def _job(row: sa.RowMapping) -> Job:
    values = {f.name: row[f.name] for f in fields(Job)}
    for col in _TIME_COLS:
        values[col] = from_ms(values[col])
    values["state"] = State(values["state"])
    values["force"] = bool(values["force"])
    return Job(**values)


_READ_ONLY = "certloop_read_only"  # execution option: a deferred (snapshot, no write lock) SQLite BEGIN


def _engine(url: str, busy_timeout: timedelta) -> Engine:
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
            read_only = conn.get_execution_options().get(_READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16, pool_recycle=1800)


class Store:
    """Synchronous store API; the daemon calls it from a thread pool."""

    def __init__(self, url: str, *, busy_timeout: timedelta = timedelta(seconds=10)) -> None:
        self.url = url
        self.engine = _engine(url, busy_timeout)
        self._skip_locked = self.engine.dialect.name in {"postgresql", "mysql", "mariadb"}
        self._read_first = self.engine.dialect.name == "sqlite"  # see enqueue_many
        # SQLite has one writer: more threads would only queue on its lock (and its busy handler sleeps in
        # growing steps, which is what a p99 feels). Servers get a small pool.
        workers = 1 if self.engine.dialect.name == "sqlite" else 8
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="store")

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking store method in the store's thread pool: ``await store.call(store.claim, ...)``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    @contextmanager
    def _tx(self, operation: str, *, read_only: bool = False) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.execution_options(**{_READ_ONLY: read_only}).begin():
                yield conn
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreUnavailable(operation, str(exc.__cause__ or exc).splitlines()[0][:300]) from exc

    def ping(self) -> None:
        with self._tx("ping") as conn:
            conn.execute(sa.select(1))

    # -- jobs -------------------------------------------------------------------------------------

    def enqueue(
        self, certificate: str, *, trigger: str, reason: str, now: datetime, force: bool = False,
        alert_started: datetime | None = None, actor: str | None = None,
    ) -> Enqueued:
        """Open a job for ``certificate`` unless one is open (then return that one).

        ``alert_started``: the alert's ``startsAt``; when the certificate was renewed successfully after
        it, a repeat notification of that alert opens nothing.
        """
        try:
            with self._tx("enqueue") as conn:
                existing = conn.execute(sa.select(jobs.c.id).where(jobs.c.active_key == certificate)).scalar()
                if existing is not None:
                    return Enqueued(int(existing), False)
                if alert_started is not None and not force:
                    last = conn.execute(
                        sa.select(certificate_state.c.last_success_at)
                        .where(certificate_state.c.certificate == certificate)
                    ).scalar()
                    if last is not None and last >= to_ms(alert_started):
                        return Enqueued(None, False)
                item = EnqueueItem(certificate, trigger, reason, now, alert_started, actor)
                return Enqueued(self._insert_job(conn, item, force), True)
        except IntegrityError:
            # Another replica (or request) opened it between our look and our insert: the constraint won.
            with self._tx("enqueue") as conn:
                existing = conn.execute(sa.select(jobs.c.id).where(jobs.c.active_key == certificate)).scalar()
            return Enqueued(None if existing is None else int(existing), False)

    def enqueue_many(self, items: Sequence[EnqueueItem]) -> list[Enqueued]:
        """:meth:`enqueue` (not forced) for each item, in order, in ONE transaction and one commit.

        The result is what the items enqueued one after another would give: a certificate named twice
        opens at most one job, the later item is its duplicate. Two lookups cover the whole batch (open
        jobs, last successes); only new jobs are written. The unique ``active_key`` stays the arbiter:
        when another replica wins a race the batch rolls back and each item is retried on its own.
        """
        if not items:
            return []
        try:
            if self._read_first:
                # SQLite: most deliveries are duplicates; a snapshot read answers them without the write lock
                # (the answer holds at that snapshot, as a locked read's holds at its commit).
                with self._tx("enqueue", read_only=True) as conn:
                    answered = self._enqueue_batch(conn, items, may_write=False)
                if answered is not None:
                    return answered
            with self._tx("enqueue") as conn:
                got = self._enqueue_batch(conn, items, may_write=True)
                assert got is not None
                return got
        except IntegrityError:
            return [self.enqueue(i.certificate, trigger=i.trigger, reason=i.reason, now=i.now,
                                 alert_started=i.alert_started, actor=i.actor) for i in items]

    @staticmethod
    def _enqueue_batch(conn: Connection, items: Sequence[EnqueueItem], *, may_write: bool) -> list[Enqueued] | None:
        open_jobs: dict[str, int] = {}
        last_success: dict[str, int] = {}
        for cert, job_id, success_ms in conn.execute(_LOOKUP, {"names": sorted({i.certificate for i in items})}):
            if job_id is not None:
                open_jobs[str(cert)] = int(job_id)
            else:
                last_success[str(cert)] = int(success_ms)
        first: dict[str, EnqueueItem] = {}  # certificates to open, with the item that opens each
        for item in items:
            last = last_success.get(item.certificate)
            stale = item.alert_started is not None and last is not None and last >= to_ms(item.alert_started)
            if item.certificate not in open_jobs and item.certificate not in first and not stale:
                first[item.certificate] = item
        if first and not may_write:
            return None
        # Inserts in one global order (sorted ids): racing batches of two replicas then wait on each other's
        # unique-key entries in the same order and cannot deadlock.
        created = {cert: Store._insert_job(conn, first[cert], False) for cert in sorted(first)}
        out: list[Enqueued] = []
        for item in items:
            cert = item.certificate
            if first.get(cert) is item:
                out.append(Enqueued(created[cert], True))
                open_jobs[cert] = created[cert]  # later items of the batch are its duplicates
            else:  # open already, or renewed after this alert started (a repeat notification): None
                out.append(Enqueued(open_jobs.get(cert), False))
        return out

    @staticmethod
    def _insert_job(conn: Connection, item: EnqueueItem, force: bool) -> int:
        ms = to_ms(item.now)
        inserted = conn.execute(
            jobs.insert().values(
                certificate=item.certificate, trigger=item.trigger, reason=item.reason[:512], force=force,
                state=State.QUEUED.value, attempt=0, deploy_attempt=0, not_before=ms,
                created_at=ms, updated_at=ms, active_key=item.certificate,
            )
        ).inserted_primary_key
        assert inserted is not None
        job_id = int(inserted[0])
        conn.execute(job_events.insert().values(
            job_id=job_id, from_state=None, to_state=State.QUEUED.value, at=ms, reason=item.reason,
            actor=item.actor,
        ))
        return job_id

    def claim(self, owner: str, now: datetime, lease: timedelta) -> Job | None:
        """Take the next runnable open job: due, and not leased (or its lease expired)."""
        ms = to_ms(now)
        query = (
            sa.select(jobs.c.id)
            .where(jobs.c.active_key.is_not(None), jobs.c.not_before <= ms)
            .where(sa.or_(jobs.c.lease_expires.is_(None), jobs.c.lease_expires < ms))
            .order_by(jobs.c.not_before, jobs.c.id)
            .limit(1)
        )
        if self._skip_locked:
            query = query.with_for_update(skip_locked=True)
        with self._tx("claim") as conn:
            job_id = conn.execute(query).scalar()
            if job_id is None:
                return None
            conn.execute(
                jobs.update().where(jobs.c.id == job_id)
                .values(lease_owner=owner, lease_expires=to_ms(now + lease), updated_at=ms)
            )
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().one()
            return _job(row)

    def extend_lease(self, job_id: int, owner: str, until: datetime) -> bool:
        """Keep the lease while working; False when another replica took the job over."""
        with self._tx("extend_lease") as conn:
            res = conn.execute(
                jobs.update().where(jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.active_key.is_not(None))
                .values(lease_expires=to_ms(until))
            )
            return res.rowcount == 1

    def transition(
        self, job_id: int, owner: str | None, to_state: State, reason: str, now: datetime, *,
        certificate_state: Mapping[str, Any] | None = None, **values: Any,
    ) -> bool:
        """Move a job to ``to_state`` and record it; False (nothing written) when ``owner`` lost the lease.

        Terminal states close the job (``active_key`` NULL) and release the lease. ``values`` sets other
        columns (``attempt``, ``not_before`` (datetime), ``last_error``, ``material_ref``, ...).
        ``certificate_state`` updates the certificate's state row in the same transaction, so a webhook
        never sees the job closed without the success that closed it.
        """
        ms = to_ms(now)
        row_values: dict[str, Any] = {"state": to_state.value, "updated_at": ms}
        for key, value in values.items():
            row_values[key] = to_ms(value) if isinstance(value, datetime) else value
        if to_state in TERMINAL_STATES:
            row_values.update(active_key=None, lease_owner=None, lease_expires=None)
        with self._tx("transition") as conn:
            where = [jobs.c.id == job_id, jobs.c.active_key.is_not(None)]
            if owner is not None:
                where.append(jobs.c.lease_owner == owner)
            current = conn.execute(sa.select(jobs.c.state).where(*where)).scalar()
            if current is None:
                return False
            conn.execute(jobs.update().where(*where).values(**row_values))
            conn.execute(job_events.insert().values(
                job_id=job_id, from_state=current, to_state=to_state.value, at=ms, reason=reason, actor=owner,
            ))
            if certificate_state is not None:
                certificate = conn.execute(sa.select(jobs.c.certificate).where(jobs.c.id == job_id)).scalar_one()
                self._upsert_state(conn, certificate, now, certificate_state)
            return True

    def get_job(self, job_id: int) -> Job | None:
        with self._tx("get_job") as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return None if row is None else _job(row)

    def events(self, job_id: int) -> list[JobEvent]:
        with self._tx("events") as conn:
            rows = conn.execute(
                sa.select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
            ).mappings().all()
        epoch = datetime.fromtimestamp(0, UTC)
        return [
            JobEvent(r["job_id"], r["from_state"], r["to_state"], from_ms(r["at"]) or epoch, r["reason"], r["actor"])
            for r in rows
        ]

    def list_jobs(
        self, *, certificate: str | None = None, state: str | None = None, limit: int = 100,
    ) -> list[Job]:
        query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if certificate is not None:
            query = query.where(jobs.c.certificate == certificate)
        if state is not None:
            query = query.where(jobs.c.state == state)
        with self._tx("list_jobs") as conn:
            return [_job(r) for r in conn.execute(query).mappings().all()]

    def queue_stats(self, now: datetime) -> QueueStats:
        ms = to_ms(now)
        leased = sa.and_(jobs.c.lease_expires.is_not(None), jobs.c.lease_expires >= ms)
        with self._tx("queue_stats") as conn:
            row = conn.execute(
                sa.select(
                    sa.func.sum(sa.case((leased, 0), else_=1)),
                    sa.func.sum(sa.case((leased, 1), else_=0)),
                    sa.func.min(sa.case((leased, None), else_=jobs.c.created_at)),
                ).where(jobs.c.active_key.is_not(None))
            ).one()
        return QueueStats(int(row[0] or 0), int(row[1] or 0), from_ms(row[2]))

    # -- certificate state ------------------------------------------------------------------------

    def certificate_states(self) -> dict[str, CertificateState]:
        with self._tx("certificate_states") as conn:
            rows = conn.execute(sa.select(certificate_state)).mappings().all()
        out = {}
        for r in rows:
            out[r["certificate"]] = CertificateState(
                r["certificate"], from_ms(r["not_after"]), from_ms(r["next_due"]), from_ms(r["last_attempt_at"]),
                from_ms(r["last_success_at"]), r["last_result"], r["last_error"], r["last_job_id"],
            )
        return out

    def update_certificate_state(self, certificate: str, now: datetime, **values: Any) -> None:
        """Upsert columns of ``certificate_state`` (datetimes converted; None clears)."""
        for _ in range(3):
            try:
                with self._tx("update_certificate_state") as conn:
                    self._upsert_state(conn, certificate, now, values)
                return
            except IntegrityError:
                continue  # inserted concurrently by another replica: the update wins next round

    @staticmethod
    def _upsert_state(conn: Connection, certificate: str, now: datetime, values: Mapping[str, Any]) -> None:
        row = {k: (to_ms(v) if isinstance(v, datetime) else v) for k, v in values.items()}
        row["updated_at"] = to_ms(now)
        table = certificate_state
        res = conn.execute(table.update().where(table.c.certificate == certificate).values(**row))
        if res.rowcount == 0:
            conn.execute(table.insert().values(certificate=certificate, **row))

    # -- rate-limit ledger ------------------------------------------------------------------------

    def record_ledger(self, events: Sequence[LedgerEvent]) -> None:
        if not events:
            return
        with self._tx("record_ledger") as conn:
            conn.execute(ratelimit_events.insert(), [
                {"issuer": e.issuer, "scope": e.scope, "key": e.key[:255], "at": to_ms(e.at), "job_id": e.job_id}
                for e in events
            ])

    def ledger(self, since: datetime, issuer: str | None = None) -> list[LedgerEvent]:
        query = sa.select(ratelimit_events).where(ratelimit_events.c.at >= to_ms(since))
        if issuer is not None:
            query = query.where(ratelimit_events.c.issuer == issuer)
        with self._tx("ledger") as conn:
            rows = conn.execute(query.order_by(ratelimit_events.c.at)).mappings().all()
        return [LedgerEvent(r["issuer"], r["scope"], r["key"], from_ms(r["at"]) or since, r["job_id"]) for r in rows]

    def prune_ledger(self, before: datetime) -> int:
        with self._tx("prune_ledger") as conn:
            return int(conn.execute(ratelimit_events.delete().where(ratelimit_events.c.at < to_ms(before))).rowcount)

    # -- whole-database dump (backup) -------------------------------------------------------------

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table as JSON-ready dicts (times stay epoch milliseconds)."""
        with self._tx("dump") as conn:
            return {t.name: [dict(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns)).mappings()]
                    for t in TABLES}

    def restore(self, data: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, int]:
        """Replace every table's rows with ``data`` (from :meth:`dump`) in one transaction."""
        counts: dict[str, int] = {}
        with self._tx("restore") as conn:
            for table in reversed(TABLES):
                conn.execute(table.delete())
            for table in TABLES:
                rows = [dict(r) for r in data.get(table.name, [])]
                known = set(table.c.keys())
                rows = [{k: v for k, v in r.items() if k in known} for r in rows]
                if rows:
                    conn.execute(table.insert(), rows)
                counts[table.name] = len(rows)
            if self.engine.dialect.name == "postgresql":
                for table in (jobs, job_events, ratelimit_events):
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608 - fixed names
                        f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                    )
        return counts
