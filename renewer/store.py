"""The job store: jobs, their audit trail, the rate-limit ledger and per-certificate state.

SQLAlchemy Core over SQLite (default, WAL, one writer at a time via ``BEGIN IMMEDIATE``), PostgreSQL or
MariaDB/MySQL (replicas: claiming with ``SELECT ... FOR UPDATE SKIP LOCKED``). The tables and the engine
set-up (with SQLite's durability trade-off) are in :mod:`renewer.database`; the records this API takes and
returns are in :mod:`renewer.records`.

One open job per certificate is a database fact, not a check-then-insert: ``jobs.active_key`` holds the
certificate id while a job is open and NULL once it is finished, under a unique constraint. Webhook
deliveries arrive in batches (:meth:`Store.enqueue_many`): one lookup and one commit per batch.

Times are aware UTC datetimes at this API and integer epoch milliseconds in the database (portable
across the three engines and exact). Every state change writes a ``job_events`` row in the same
transaction. Database driver errors become :class:`StoreUnavailable` here and nowhere else.

Outages: with a ``timeout``, every :meth:`Store.call` has a deadline counted from the moment it is
asked (queueing for a store thread included). Past it the caller gets :class:`StoreUnavailable` at once,
a call still queued is dropped, and the watchdog (:mod:`renewer.deadline`) aborts the database I/O of a
call already running, so a database that stops answering costs each caller at most ``timeout`` and
never more than the pool's few threads, which come back by themselves; when the database answers
again the next call simply succeeds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from certloop.renewer import migrations
from certloop.renewer.database import (
    READ_ONLY,
    TABLES,
    abort_connection,
    audit_events,
    certificate_state,
    create_engine,
    job_events,
    jobs,
    ratelimit_events,
    redact_url,
)
from certloop.renewer.deadline import Watchdog
from certloop.renewer.errors import DeadlinePassed, StoreUnavailable
from certloop.renewer.records import (
    TERMINAL_STATES,
    AuditEvent,
    CertificateState,
    Enqueued,
    EnqueueItem,
    Job,
    JobEvent,
    LedgerEvent,
    PoolStats,
    QueueStats,
    State,
    from_ms,
    job_from_row,
    to_ms,
)

__all__ = ["Store"]

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


# The webhook's one lookup per batch, built once (its cache key is memoized): open jobs and last successes
# of the named certificates. Rows: (certificate, open job id, NULL) and (certificate, NULL, last success ms).
_NAMES: sa.BindParameter[list[str]] = sa.bindparam("names", expanding=True)
_LOOKUP = sa.union_all(
    sa.select(jobs.c.active_key, jobs.c.id, sa.cast(sa.null(), sa.BigInteger)).where(jobs.c.active_key.in_(_NAMES)),
    sa.select(certificate_state.c.certificate, sa.cast(sa.null(), sa.Integer), certificate_state.c.last_success_at)
    .where(certificate_state.c.certificate.in_(_NAMES), certificate_state.c.last_success_at.is_not(None)),
)


class Store:
    """Synchronous store API; the daemon calls it from a bounded thread pool with :meth:`call`.

    ``timeout``: the deadline of one :meth:`call` (None: no deadline, for the CLI's long operations;
    connecting stays bounded).
    """

    def __init__(
        self, url: str, *, busy_timeout: timedelta = timedelta(seconds=10), timeout: timedelta | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._watchdog = Watchdog(abort_connection)
        self.engine = create_engine(url, busy_timeout, timeout=timeout, watchdog=self._watchdog)
        self._skip_locked = self.engine.dialect.name in {"postgresql", "mysql", "mariadb"}
        self._read_first = self.engine.dialect.name == "sqlite"  # see enqueue_many
        # SQLite has one writer: more threads would only queue on its lock (and its busy handler sleeps in
        # growing steps, which is what a p99 feels). Servers get a small pool. The pool is the bound on
        # store threads: an outage parks at most these, each until its deadline.
        workers = 1 if self.engine.dialect.name == "sqlite" else 8
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="store")
        # Called with the seconds each operation waited for its connection (a free pool slot, connecting,
        # the checkout ping): the daemon's metrics; runs in the store's threads.
        self.on_connection_wait: Callable[[float], None] | None = None

    def pool_stats(self) -> PoolStats:
        """The pool's counters (SQLAlchemy's ``QueuePool``, SQLite's file databases included); a pool
        without them (SQLite in memory, tests) reports what it can: its checked-out connections or 0."""
        pool = self.engine.pool
        if isinstance(pool, sa.QueuePool):
            # overflow() starts at -size and counts every connection opened: beyond the size is max(0, .)
            return PoolStats(pool.size(), pool.checkedout(), max(0, pool.overflow()))
        checked_out = getattr(pool, "checkedout", None)
        return PoolStats(0, int(checked_out()) if callable(checked_out) else 0, 0)

    @property
    def database(self) -> str:
        """The database URL with its password hidden: for messages."""
        return redact_url(self.url)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._watchdog.close()
        self.engine.dispose()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking store method in the store's thread pool: ``await store.call(store.claim, ...)``.

        Raises :class:`StoreUnavailable` when the answer is not there within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        if self.timeout is None:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        seconds = self.timeout.total_seconds()
        work = functools.partial(self._until, time.monotonic() + seconds, fn, *args, **kwargs)
        try:
            # On timeout wait_for cancels the future: a call still queued never runs.
            return await asyncio.wait_for(loop.run_in_executor(self._executor, work), seconds)
        except TimeoutError:
            raise self._timed_out(getattr(fn, "__name__", "call")) from None

    def _until(self, deadline: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if time.monotonic() >= deadline:  # waited its whole time in the queue: do not touch the database
            raise self._timed_out(getattr(fn, "__name__", "call"))
        with self._watchdog.deadline(deadline):
            return fn(*args, **kwargs)

    def _timed_out(self, operation: str) -> StoreUnavailable:
        seconds = self.timeout.total_seconds() if self.timeout is not None else 0.0
        return StoreUnavailable(operation, f"no answer from the database within {seconds:g}s", self.database)

    @contextmanager
    def _tx(self, operation: str, *, read_only: bool = False) -> Iterator[Connection]:
        with self._errors(operation):
            start = time.perf_counter()
            with self.engine.connect() as conn:  # checks a connection out of the pool (SQLAlchemy 2)
                if self.on_connection_wait is not None:
                    self.on_connection_wait(time.perf_counter() - start)
                with conn.execution_options(**{READ_ONLY: read_only}).begin():
                    yield conn

    def transaction(self, operation: str) -> AbstractContextManager[Connection]:
        """A write transaction for the small modules beside the store (:mod:`renewer.sharedsecret`): the
        same connection handling and error seam as the store's own methods; IntegrityError passes through."""
        return self._tx(operation)

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """The one seam: driver errors (and a passed deadline) become :class:`StoreUnavailable`."""
        try:
            yield
        except IntegrityError:
            raise
        except (SQLAlchemyError, DeadlinePassed) as exc:
            arm = self._watchdog.current()
            if isinstance(exc, DeadlinePassed) or (arm is not None and arm.fired):
                raise self._timed_out(operation) from exc
            detail = str(exc.__cause__ or exc).splitlines()[0][:300]
            raise StoreUnavailable(operation, detail, self.database) from exc

    # -- schema (Alembic), with driver errors translated like every other operation ----------------

    def migrate(self, revision: str = "head") -> None:
        with self._errors("migrate"):
            migrations.upgrade(self.engine, revision)

    def downgrade(self, revision: str) -> None:
        with self._errors("downgrade"):
            migrations.downgrade(self.engine, revision)

    def revision(self) -> str | None:
        with self._errors("revision"):
            return migrations.current(self.engine)

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
            return job_from_row(row)

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
        return None if row is None else job_from_row(row)

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
            return [job_from_row(r) for r in conn.execute(query).mappings().all()]

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

    # -- audit trail -------------------------------------------------------------------------------

    def record_audit(self, events: Sequence[AuditEvent]) -> None:
        """Append ``events`` in one transaction (values cut to their columns' sizes)."""
        if not events:
            return
        with self._tx("record_audit") as conn:
            conn.execute(audit_events.insert(), [
                {"at": to_ms(e.at), "actor": _cut(e.actor, 128), "role": _cut(e.role, 16), "action": e.action[:32],
                 "target": _cut(e.target, 255), "address": _cut(e.address, 64), "status": e.status,
                 "detail": _cut(e.detail, 512)}
                for e in events
            ])

    def audit(self, *, limit: int = 100, before: int | None = None, actor: str | None = None) -> list[AuditEvent]:
        """The newest ``limit`` audit events (older than id ``before`` when given: paging), newest first."""
        query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(audit_events.c.id < before)
        if actor is not None:
            query = query.where(audit_events.c.actor == actor)
        with self._tx("audit", read_only=True) as conn:
            rows = conn.execute(query).mappings().all()
        epoch = datetime.fromtimestamp(0, UTC)
        return [AuditEvent(from_ms(r["at"]) or epoch, r["actor"], r["role"], r["action"], r["target"], r["address"],
                           int(r["status"]), r["detail"], int(r["id"])) for r in rows]

    def retry(self, job_id: int, *, now: datetime, actor: str | None) -> tuple[Job | None, Enqueued | None]:
        """Queue the certificate of finished job ``job_id`` again when that job failed or was rolled back.

        Returns (the job, None) when it is not retryable (open or succeeded), (None, None) when it does not
        exist; otherwise what :meth:`enqueue` gave (an open job of the certificate is returned, not doubled).
        """
        job = self.get_job(job_id)
        if job is None or job.state not in {State.FAILED, State.ROLLED_BACK}:
            return job, None
        return job, self.enqueue(job.certificate, trigger="retry", reason=f"retry of job {job_id} ({job.state.value})",
                                 now=now, force=job.force, actor=actor)

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
                for table in (jobs, job_events, ratelimit_events, audit_events):
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608 - fixed names
                        f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                    )
        return counts


def _cut(value: str | None, size: int) -> str | None:
    return None if value is None else value[:size]
