"""What the job store reads and writes: jobs and their states, events, ledger entries, certificate state.

    job = job_from_row(conn.execute(sa.select(jobs)).mappings().one())   # a jobs row as a frozen Job
    to_ms(job.created_at), from_ms(1767225600000)                        # aware UTC <-> epoch milliseconds

Frozen dataclasses with aware UTC datetimes: the types of :class:`renewer.store.Store`'s API. The database
holds integer epoch milliseconds (portable across the three engines and exact); :func:`to_ms` and
:func:`from_ms` convert, and :func:`job_from_row` maps a ``jobs`` row.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

__all__ = [
    "OPEN_STATES",
    "TERMINAL_STATES",
    "AuditEvent",
    "CertificateState",
    "EnqueueItem",
    "Enqueued",
    "Job",
    "JobEvent",
    "LedgerEvent",
    "PoolStats",
    "QueueStats",
    "State",
    "from_ms",
    "job_from_row",
    "to_ms",
]


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


def to_ms(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("naive datetime: certloop uses aware UTC everywhere")
    return int(when.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


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
class AuditEvent:
    """One line of the audit trail: who (a principal's name, never a secret; None when not authenticated),
    what (``action`` from a fixed set: renew, retry, reload, webhook, refused), on what (``target``: a
    certificate id, a job, a path), from which address, and the HTTP status it was answered with."""

    at: datetime
    actor: str | None
    role: str | None
    action: str
    target: str | None
    address: str | None
    status: int
    detail: str | None = None
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor, "role": self.role,
                "action": self.action, "target": self.target, "address": self.address, "status": self.status,
                "detail": self.detail}


@dataclass(frozen=True)
class QueueStats:
    queued: int
    in_progress: int
    oldest_queued: datetime | None


@dataclass(frozen=True)
class PoolStats:
    """The connection pool right now (in memory, no I/O): its configured size, connections lent out,
    connections opened beyond the size (0 for pools without overflow)."""

    size: int
    checked_out: int
    overflow: int


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


def job_from_row(row: sa.RowMapping) -> Job:
    """A ``jobs`` row as a :class:`Job` (times from epoch milliseconds, the state as a :class:`State`)."""
    values = {f.name: row[f.name] for f in fields(Job)}
    for col in _TIME_COLS:
        values[col] = from_ms(values[col])
    values["state"] = State(values["state"])
    values["force"] = bool(values["force"])
    return Job(**values)
