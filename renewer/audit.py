"""The audit trail's writer: what the API records, and the bound on what an attacker can make it record.

    trail = AuditTrail(store, metrics, clock)
    await trail.record(AuditEvent(...))    # a state-changing call: written before the answer goes out
    trail.refused(event)                    # a 401/403: written later, in a batch, at most N a minute

What must stay true:

- a state-changing call (manual renewal, retry, reload) is in the trail when its answer is sent; a webhook
  that queued a job is written after the answer (the webhook's latency does not pay for it), batched;
- 401s and 403s cost at most ``refusals_per_minute`` rows a minute whatever arrives (a flood of bad
  passwords cannot fill the database); the rest are counted in
  ``certloop_renewer_audit_events_dropped_total{reason="rate_limited"}``;
- background writes never grow without bound (``max_pending``), and a store outage loses audit lines
  (counted, ``reason="store_unavailable"``) rather than blocking or failing the request that caused them;
- an audit line holds a principal's name, never a credential.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from certloop.renewer.errors import StoreUnavailable
from certloop.renewer.metrics import RenewerMetrics
from certloop.renewer.records import AuditEvent
from certloop.renewer.store import Store

__all__ = ["ACTIONS", "AuditTrail"]

log = logging.getLogger(__name__)
ACTIONS = ("renew", "retry", "reload", "webhook", "refused")


class AuditTrail:
    def __init__(self, store: Store, metrics: RenewerMetrics, clock: Callable[[], datetime], *,
                 refusals_per_minute: int = 60, max_pending: int = 1000) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.refusals_per_minute = refusals_per_minute
        self.max_pending = max_pending
        self._window: datetime | None = None  # start of the current minute of refusals
        self._refusals = 0
        self._pending: list[AuditEvent] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, event: AuditEvent) -> None:
        """Write ``event`` now (the caller's answer waits for it); a store outage is logged and counted."""
        try:
            await self.store.call(self.store.record_audit, [event])
        except StoreUnavailable as exc:
            self._dropped("store_unavailable", 1)
            log.error("audit: cannot record %s by %s: %s", event.action, event.actor or "anonymous", exc)

    def refused(self, event: AuditEvent) -> None:
        """Note a 401/403 for a batched write, unless this minute's quota of refusals is used up."""
        now = self.clock()
        if self._window is None or now - self._window >= timedelta(minutes=1):
            self._window, self._refusals = now, 0
        if self._refusals >= self.refusals_per_minute:
            self._dropped("rate_limited", 1)
            return
        self._refusals += 1
        self.later(event)

    def later(self, event: AuditEvent) -> None:
        """Queue ``event`` for the background writer (bounded: past ``max_pending`` it is counted, not kept)."""
        if len(self._pending) >= self.max_pending:
            self._dropped("overflow", 1)
            return
        self._pending.append(event)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def flush(self) -> None:
        """Wait until everything noted so far is written (tests, shutdown)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.store.call(self.store.record_audit, batch)
            except StoreUnavailable as exc:
                self._dropped("store_unavailable", len(batch))
                log.error("audit: cannot record %d events: %s", len(batch), exc)

    def _dropped(self, reason: str, n: int) -> None:
        self.metrics.audit_dropped.labels(reason).inc(n)
