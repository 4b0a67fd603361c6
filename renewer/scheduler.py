"""The safety net: every ``scheduler.interval`` read each certificate's installed files and queue those
inside ``renew_before`` (or missing), even if no alert ever arrives. APScheduler runs the tick.

:func:`installed_facts` and :func:`next_due` are shared with the API (``GET /api/v1/certificates``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from certloop.caches import Caches
from certloop.errors import CertloopError
from certloop.facts import CertFacts, facts
from certloop.renewer.config import RenewerConfig
from certloop.renewer.errors import RenewerError
from certloop.renewer.spec import CertificateSpec, renewal_due_at, should_renew
from certloop.renewer.store import Store
from certloop.x509 import read_certificate_file

__all__ = ["SafetyNet", "installed_facts", "next_due"]

log = logging.getLogger(__name__)


def installed_facts(spec: CertificateSpec) -> CertFacts | None:
    """Facts of the live leaf (from ``outputs.cert``, else ``outputs.fullchain``); None if unreadable."""
    path = spec.outputs.cert or spec.outputs.fullchain
    if path is None:
        return None
    try:
        caches = Caches()  # one file read now and then: nothing worth keeping between reads
        parsed = read_certificate_file(path, caches)
    except CertloopError:
        return None
    return facts(parsed.certificates[0], caches)


def next_due(spec: CertificateSpec, live: CertFacts | None, now: datetime) -> datetime:
    """When the safety net renews: inside renew_before, or now when nothing is installed."""
    return now if live is None else renewal_due_at(spec, live.not_before, live.not_after)


class SafetyNet:
    """Queue due certificates on an interval; ``on_queued`` wakes the local workers."""

    def __init__(
        self, store: Store, config: Callable[[], RenewerConfig], clock: Callable[[], datetime],
        on_queued: Callable[[], None],
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.on_queued = on_queued
        self._scheduler: AsyncIOScheduler | None = None

    async def tick(self) -> list[str]:
        """One pass: refresh each certificate's expiry/next-due state and queue the due ones."""
        queued: list[str] = []
        for spec in self.config().certificates:
            now = self.clock()
            live = installed_facts(spec)
            due = next_due(spec, live, now)
            try:
                await self.store.call(
                    self.store.update_certificate_state, spec.id, now,
                    not_after=live.not_after if live else None, next_due=due,
                )
                if not should_renew(spec, live, now):
                    continue
                why = "no installed certificate" if live is None else f"inside renew_before since {due.isoformat()}"
                result = await self.store.call(
                    self.store.enqueue, spec.id, trigger="schedule", reason=f"safety net: {why}", now=now,
                    actor="scheduler",
                )
            except RenewerError as exc:
                log.warning("safety net: cannot queue %s: %s", spec.id, exc)
                continue
            if result.created:
                log.info("safety net queued %s (job %s): %s", spec.id, result.job_id, why)
                queued.append(spec.id)
        if queued:
            self.on_queued()
        rules = self.config().rate_limits
        if rules:
            oldest_needed = self.clock() - max(r.window for r in rules)
            try:
                await self.store.call(self.store.prune_ledger, oldest_needed)
            except RenewerError as exc:
                log.warning("safety net: cannot prune the rate-limit ledger: %s", exc)
        return queued

    def start(self) -> None:
        cfg = self.config().scheduler
        if not cfg.enabled:
            return
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_job(
            self.tick, "interval", seconds=cfg.interval.total_seconds(), id="safety-net",
            next_run_time=self.clock(), max_instances=1, coalesce=True, misfire_grace_time=None,
        )
        self._scheduler.start()

    def restart(self) -> None:
        """Apply a reloaded ``scheduler`` section."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
