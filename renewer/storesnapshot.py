"""The whole database at once, for backups: every row of every table out, and back in one transaction.

What must stay true: a restore replaces everything or nothing, and on PostgreSQL the id sequences continue
after the restored rows (a later insert must not collide with a restored id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from certloop.renewer.database import TABLES, audit_events, job_events, jobs, ratelimit_events
from certloop.renewer.storebase import StoreBase

__all__ = ["SnapshotStore"]


class SnapshotStore(StoreBase):
    """The dump and restore part of :class:`renewer.store.Store`."""

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table as JSON-ready dicts (times stay epoch milliseconds)."""
        with self.transaction("dump") as conn:
            return {t.name: [dict(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns)).mappings()]
                    for t in TABLES}

    def restore(self, data: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, int]:
        """Replace every table's rows with ``data`` (from :meth:`dump`) in one transaction."""
        counts: dict[str, int] = {}
        with self.transaction("restore") as conn:
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
