"""The audit trail's rows: who did what through the API, appended in batches, read newest first.

Values are cut to their columns' sizes here, so a long actor or detail never fails the write that records it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from certloop.renewer.database import audit_events
from certloop.renewer.records import AuditEvent, from_ms, to_ms
from certloop.renewer.storebase import StoreBase

__all__ = ["AuditStore"]


class AuditStore(StoreBase):
    """The audit trail part of :class:`renewer.store.Store`."""

    def record_audit(self, events: Sequence[AuditEvent]) -> None:
        """Append ``events`` in one transaction (values cut to their columns' sizes)."""
        if not events:
            return
        with self.transaction("record_audit") as conn:
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
        with self.transaction("audit", read_only=True) as conn:
            rows = conn.execute(query).mappings().all()
        epoch = datetime.fromtimestamp(0, UTC)
        return [AuditEvent(from_ms(r["at"]) or epoch, r["actor"], r["role"], r["action"], r["target"], r["address"],
                           int(r["status"]), r["detail"], int(r["id"])) for r in rows]


def _cut(value: str | None, size: int) -> str | None:
    return None if value is None else value[:size]
