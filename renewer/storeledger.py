"""The rate-limit ledger: what each issuance counted against an issuer's limits, by scope and key.

Rows are appended as issuances happen and read back over a window (:mod:`renewer.ratelimit` decides from
them); rows older than the longest window are pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from certloop.renewer.database import ratelimit_events
from certloop.renewer.records import LedgerEvent, from_ms, to_ms
from certloop.renewer.storebase import StoreBase

__all__ = ["LedgerStore"]


class LedgerStore(StoreBase):
    """The rate-limit ledger part of :class:`renewer.store.Store`."""

    def record_ledger(self, events: Sequence[LedgerEvent]) -> None:
        if not events:
            return
        with self.transaction("record_ledger") as conn:
            conn.execute(ratelimit_events.insert(), [
                {"issuer": e.issuer, "scope": e.scope, "key": e.key[:255], "at": to_ms(e.at), "job_id": e.job_id}
                for e in events
            ])

    def ledger(self, since: datetime, issuer: str | None = None) -> list[LedgerEvent]:
        query = sa.select(ratelimit_events).where(ratelimit_events.c.at >= to_ms(since))
        if issuer is not None:
            query = query.where(ratelimit_events.c.issuer == issuer)
        with self.transaction("ledger") as conn:
            rows = conn.execute(query.order_by(ratelimit_events.c.at)).mappings().all()
        return [LedgerEvent(r["issuer"], r["scope"], r["key"], from_ms(r["at"]) or since, r["job_id"]) for r in rows]

    def prune_ledger(self, before: datetime) -> int:
        with self.transaction("prune_ledger") as conn:
            return int(conn.execute(ratelimit_events.delete().where(ratelimit_events.c.at < to_ms(before))).rowcount)
