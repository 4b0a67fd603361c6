"""The job store: jobs, their audit trail, the rate-limit ledger and per-certificate state, in one database.

    store = Store(url, timeout=timedelta(seconds=1.5))
    job = await store.call(store.claim, owner, now, lease)   # every method is blocking: run it with call()

:class:`Store` is the one object the daemon, the API, the worker and the CLI hold. It is composed of one part
per concern, each over the same connection handling:

- :mod:`renewer.storebase`: the pool of store threads, the deadline of every :meth:`~StoreBase.call`, the
  one seam where driver errors become :class:`~renewer.errors.StoreUnavailable`, the schema's migrations;
- :mod:`renewer.storejobs`: jobs (one open per certificate), claims and leases, state changes with their
  events, and the certificate state they update;
- :mod:`renewer.storeledger`: the rate-limit ledger;
- :mod:`renewer.storeaudit`: the audit trail;
- :mod:`renewer.storesnapshot`: the whole database out and in, for backups.

The tables are in :mod:`renewer.database`, the records this API takes and returns in :mod:`renewer.records`.
"""

from __future__ import annotations

from certloop.renewer.storeaudit import AuditStore
from certloop.renewer.storejobs import JobStore
from certloop.renewer.storeledger import LedgerStore
from certloop.renewer.storesnapshot import SnapshotStore

__all__ = ["Store"]


class Store(JobStore, LedgerStore, AuditStore, SnapshotStore):
    """Synchronous store API; the daemon calls it from a bounded thread pool with :meth:`call`.

    ``Store(url, busy_timeout=..., timeout=...)``: see :class:`renewer.storebase.StoreBase`.
    """
