"""Jobs and the per-certificate state they change: open, claim, lease, move through states, look up.

One open job per certificate is a database fact, not a check-then-insert: ``jobs.active_key`` holds the
certificate id while a job is open and NULL once it is finished, under a unique constraint. Webhook
deliveries arrive in batches (:meth:`JobStore.enqueue_many`): one lookup and one commit per batch. Replicas
claim with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB/MySQL.

Times are aware UTC datetimes at this API and integer epoch milliseconds in the database (portable across
the three engines and exact). Every state change writes a ``job_events`` row in the same transaction, and a
change that finishes a job updates the certificate's ``certificate_state`` row in that transaction too, so a
webhook never sees the job closed without the success that closed it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from certloop.renewer.database import certificate_state, job_events, jobs
from certloop.renewer.records import (
    TERMINAL_STATES,
    CertificateState,
    Enqueued,
    EnqueueItem,
    Job,
    JobEvent,
    QueueStats,
    State,
    from_ms,
    job_from_row,
    to_ms,
)
from certloop.renewer.storebase import StoreBase

__all__ = ["JobStore"]


# The webhook's one lookup per batch, built once (its cache key is memoized): open jobs and last successes
# of the named certificates. Rows: (certificate, open job id, NULL) and (certificate, NULL, last success ms).
_NAMES: sa.BindParameter[list[str]] = sa.bindparam("names", expanding=True)
_LOOKUP = sa.union_all(
    sa.select(jobs.c.active_key, jobs.c.id, sa.cast(sa.null(), sa.BigInteger)).where(jobs.c.active_key.in_(_NAMES)),
    sa.select(certificate_state.c.certificate, sa.cast(sa.null(), sa.Integer), certificate_state.c.last_success_at)
    .where(certificate_state.c.certificate.in_(_NAMES), certificate_state.c.last_success_at.is_not(None)),
)


class JobStore(StoreBase):
    """The jobs part of :class:`renewer.store.Store`."""

    @property
    def _skip_locked(self) -> bool:
        """Claims skip rows another replica locked (the servers); SQLite has one writer anyway."""
        return self.engine.dialect.name in {"postgresql", "mysql", "mariadb"}

    @property
    def _read_first(self) -> bool:
        """See :meth:`enqueue_many`: a snapshot read first pays off where writers queue on one lock."""
        return self.engine.dialect.name == "sqlite"

    def enqueue(
        self, certificate: str, *, trigger: str, reason: str, now: datetime, force: bool = False,
        alert_started: datetime | None = None, actor: str | None = None,
    ) -> Enqueued:
        """Open a job for ``certificate`` unless one is open (then return that one).

        ``alert_started``: the alert's ``startsAt``; when the certificate was renewed successfully after
        it, a repeat notification of that alert opens nothing.
        """
        try:
            with self.transaction("enqueue") as conn:
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
            with self.transaction("enqueue") as conn:
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
                with self.transaction("enqueue", read_only=True) as conn:
                    answered = self._enqueue_batch(conn, items, may_write=False)
                if answered is not None:
                    return answered
            with self.transaction("enqueue") as conn:
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
        created = {cert: JobStore._insert_job(conn, first[cert], False) for cert in sorted(first)}
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
        with self.transaction("claim") as conn:
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
        with self.transaction("extend_lease") as conn:
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
        with self.transaction("transition") as conn:
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
        with self.transaction("get_job") as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return None if row is None else job_from_row(row)

    def events(self, job_id: int) -> list[JobEvent]:
        with self.transaction("events") as conn:
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
        with self.transaction("list_jobs") as conn:
            return [job_from_row(r) for r in conn.execute(query).mappings().all()]

    def queue_stats(self, now: datetime) -> QueueStats:
        ms = to_ms(now)
        leased = sa.and_(jobs.c.lease_expires.is_not(None), jobs.c.lease_expires >= ms)
        with self.transaction("queue_stats") as conn:
            row = conn.execute(
                sa.select(
                    sa.func.sum(sa.case((leased, 0), else_=1)),
                    sa.func.sum(sa.case((leased, 1), else_=0)),
                    sa.func.min(sa.case((leased, None), else_=jobs.c.created_at)),
                ).where(jobs.c.active_key.is_not(None))
            ).one()
        return QueueStats(int(row[0] or 0), int(row[1] or 0), from_ms(row[2]))

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

    # -- certificate state (written with the job that changes it) ---------------------------------

    def certificate_states(self) -> dict[str, CertificateState]:
        with self.transaction("certificate_states") as conn:
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
                with self.transaction("update_certificate_state") as conn:
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
