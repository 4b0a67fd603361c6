"""The worker: claim open jobs, issue, save, deploy, verify; retry issuance and deployment separately.

Each of ``worker.concurrency`` loops claims one job at a time from the shared store (a lease, renewed
while working). Phases of a job:

1. issuance (state ``issuing``): the rate-limit ledger is consulted first (deny -> back to ``queued``
   with the reason, until the limit frees up); the issuer runs; the material is validated and saved
   encrypted (``pipeline.save_material``), keyed by the job id.
2. deployment (``installing`` -> ``verifying``): ``install.deploy`` installs, reloads, verifies, and
   rolls back by itself on failure. A rolled-back deployment is retried from the saved material -
   a failed reload never re-issues.

A crash (kill -9) anywhere: the live files are restored by ``install.recover`` at start-up or before
the resumed deployment; the job's lease expires and any replica resumes it from its saved material,
or re-issues if nothing was saved yet. Every state change is written with its reason.

The log tells the same story without the API: every failed attempt (issuance or deployment, retried)
is one WARNING record, every terminal failure (``failed``, ``rolled_back``) one ERROR record, with the
tool's stderr tail in it (:func:`failure_detail`). The log formatter (:mod:`certloop.logs`) escapes the
newlines and control characters, so each record is one line whatever the tool printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography import x509

from certloop.renewer import install, pipeline
from certloop.renewer.config import RenewerConfig
from certloop.renewer.context import RenewalContext
from certloop.renewer.errors import (
    BackendFailed,
    ChallengeFailed,
    IssuanceError,
    LeaseLost,
    NotDue,
    PendingManual,
    RateLimited,
    RenewerError,
    RollbackFailed,
    RolledBack,
    StoreUnavailable,
    ValidationError,
)
from certloop.renewer.material import IssuedMaterial
from certloop.renewer.metrics import RenewerMetrics
from certloop.renewer.policy import next_attempt_at
from certloop.renewer.ratelimit import check, failure_events, issued_events, ledger_request, order_events
from certloop.renewer.records import Job, State
from certloop.renewer.spec import CertificateSpec, renewal_due_at
from certloop.renewer.store import Store

__all__ = [ "OutageLog", "Worker", "failure_detail"]

log = logging.getLogger(__name__)


LOGGED_TAIL = 1000  # characters of a failure's detail (with its stderr tail) in one log line


def failure_detail(exc: RenewerError) -> str:
    """``Kind: message``, plus the program's stderr tail when the message does not already carry it."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, BackendFailed):
        tail = exc.stderr_tail.strip()
        if tail and tail not in detail:
            detail += f" | stderr: {tail}"
    return detail


def _tail(text: str, limit: int = LOGGED_TAIL) -> str:
    """At most ``limit`` characters: the start (what failed) and the end (a stderr tail's last words)."""
    if len(text) <= limit:
        return text
    head = limit // 4
    return f"{text[:head]} ... {text[-(limit - head - 5):]}"


class OutageLog:
    """What the claim loops say about a job store they cannot reach: a line when the outage starts, then
    at most one every ``every`` seconds while it lasts, and a line when it ends.

    Every loop polls every ``poll_interval``; a line per failed claim would flood the log for the whole
    outage. Shared by the loops of one worker, so the count is per process.
    """

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self.since: float | None = None  # when the outage started, None while the store answers
        self._last_report = 0.0
        self._failures = 0

    def failed(self, exc: StoreUnavailable) -> None:
        now = self.clock()
        self._failures += 1
        if self.since is None:
            self.since = self._last_report = now
            log.warning("cannot claim jobs, the job store is unavailable: %s (next report in %.0fs)",
                        exc, self.every)
        elif now - self._last_report >= self.every:
            self._last_report = now
            log.warning("still cannot claim jobs after %.0fs (%d failed attempts): %s",
                        now - self.since, self._failures, exc)
        else:  # each failed poll, for whoever debugs an outage (and for tests, which wait on the count)
            log.debug("claim attempt %d of this outage failed: %s", self._failures, exc)

    def succeeded(self) -> None:
        if self.since is None:
            return
        log.warning("the job store answers again: claiming jobs after %.0fs (%d failed attempts)",
                    self.clock() - self.since, self._failures)
        self.since, self._failures = None, 0


class Worker:
    def __init__(
        self, *, store: Store, config: Callable[[], RenewerConfig], ctx: RenewalContext,
        metrics: RenewerMetrics, owner: str, rand: Callable[[], float] = random.random,
        outage_log: OutageLog | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.ctx = ctx
        self.clock = ctx.clock
        self.metrics = metrics
        self.owner = owner
        self.rand = rand
        self._wake = asyncio.Event()
        self.active: dict[int, str] = {}  # job id -> certificate, for this process
        self.outage = outage_log or OutageLog()

    def wake(self) -> None:
        self._wake.set()

    async def recover_all(self) -> None:
        """At start-up: remove what killed issuances left in staging (maybe plaintext keys), and undo
        installs a crash interrupted, for every configured certificate."""
        try:
            stale = await asyncio.to_thread(pipeline.remove_stale_staging, self.ctx)
        except OSError as exc:
            log.error("cannot clean the staging directory: %s", exc)
        else:
            if stale:
                log.warning("removed %d staging director%s left by an interrupted issuance: %s", len(stale),
                            "y" if len(stale) == 1 else "ies", ", ".join(str(p) for p in stale))
        for spec in self.config().certificates:
            try:
                if await install.recover(spec, self.ctx):
                    log.warning("recovered an interrupted install of %s: previous files restored", spec.id)
            except RenewerError as exc:
                log.error("cannot recover the interrupted install of %s: %s", spec.id, exc)

    async def run(self, stop: asyncio.Event, grace: float = 30.0) -> None:
        """Work until ``stop`` is set; then claim nothing new and give running jobs ``grace`` seconds
        to finish before cancelling them (a cancelled job resumes elsewhere when its lease expires)."""
        loops = [asyncio.create_task(self._loop(stop), name=f"worker-{i}")
                 for i in range(self.config().worker.concurrency)]
        try:
            await stop.wait()
            self._wake.set()  # idle loops notice the stop at once
            _, pending = await asyncio.wait(loops, timeout=grace)
            if pending:
                log.warning("stopping: %d job(s) still running after %.0fs are cancelled", len(pending), grace)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            cfg = self.config().worker
            try:
                job = await self.store.call(self.store.claim, self.owner, self.clock(), cfg.lease)
            except StoreUnavailable as exc:
                self.outage.failed(exc)
                job = None
            else:
                self.outage.succeeded()
            if job is None:
                if stop.is_set():
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), cfg.poll_interval.total_seconds())
                continue
            self._wake.set()  # there may be more: let an idle sibling look too
            await self.work(job)

    async def work(self, job: Job) -> None:
        """Run one claimed job until it is finished, requeued or its lease is lost."""
        self.active[job.id] = job.certificate
        task = asyncio.create_task(self._process(job))
        beat = asyncio.create_task(self._heartbeat(job, task))
        try:
            await task
        except LeaseLost:
            log.warning("job %s: lease lost to another replica; stopped working on it", job.id)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            log.warning("job %s: stopped (lease lost or shutting down)", job.id)
        except StoreUnavailable as exc:
            log.error("job %s: store unavailable (%s); it resumes when the lease expires", job.id, exc)
        except Exception:
            log.exception("job %s: unexpected error", job.id)
            with contextlib.suppress(RenewerError):
                await self._finish(job, None, State.FAILED, "internal error (see the renewer log)")
        finally:
            beat.cancel()
            self.active.pop(job.id, None)

    async def _heartbeat(self, job: Job, task: asyncio.Task[None]) -> None:
        lease = self.config().worker.lease
        while not task.done():
            await asyncio.sleep(lease.total_seconds() / 3)
            try:
                ok = await self.store.call(self.store.extend_lease, job.id, self.owner, self.clock() + lease)
            except StoreUnavailable:
                continue
            if not ok:
                task.cancel()
                return

    async def _move(
        self, job: Job, to: State, reason: str, *, certificate_state: dict[str, object] | None = None,
        **values: object,
    ) -> None:
        ok = await self.store.call(self.store.transition, job.id, self.owner, to, reason, self.clock(),
                                   certificate_state=certificate_state, **values)
        if not ok:
            raise LeaseLost(f"job {job.id}")

    async def _process(self, job: Job) -> None:
        cfg = self.config()
        spec = cfg.spec(job.certificate)
        if spec is None:
            await self._finish(job, None, State.FAILED, "certificate is no longer configured")
            return
        material = pipeline.load_material(self.ctx, job.id)
        if job.state in (State.INSTALLING, State.VERIFYING):
            # A replica died mid-deployment: put the previous files back before anything else.
            await install.recover(spec, self.ctx)
        if material is None:
            material = await self._issue(job, spec)
            if material is None:
                return
        await self._deploy(job, spec, material)

    async def _issue(self, job: Job, spec: CertificateSpec) -> IssuedMaterial | None:
        cfg = self.config()
        now = self.clock()
        request = ledger_request(spec)
        longest = max((r.window for r in cfg.rate_limits), default=timedelta(0))
        events = await self.store.call(self.store.ledger, now - longest, request.account)
        decision = check(cfg.rate_limits, events, request, now)
        if not decision.allowed:
            retry_at = decision.retry_at or now
            await self._move(job, State.QUEUED, f"waiting: {decision.detail}; next try {_iso(retry_at)}",
                             not_before=retry_at, lease_owner=None, lease_expires=None)
            return None
        attempt = job.attempt + 1
        await self._move(job, State.ISSUING, f"issuing with {spec.issuer.type} (attempt {attempt})",
                         attempt=attempt, started_at=job.started_at or now)
        await self.store.call(self.store.record_ledger, order_events(request, now, job.id))
        try:
            material = await pipeline.issue(spec, self.ctx)
        except IssuanceError as exc:
            await self._issue_failed(job, spec, attempt, exc)
            return None
        # The CA counts the certificate it issued, whether or not it passes our validation.
        await self.store.call(self.store.record_ledger, issued_events(request, self.clock(), job.id))
        try:
            # Signature checks and fsyncs run off the event loop: webhooks share it and must not wait.
            await asyncio.to_thread(pipeline.validate, material, spec, now=self.clock())
        except ValidationError as exc:
            await self._issue_failed(job, spec, attempt, exc)
            return None
        await asyncio.to_thread(pipeline.save_material, self.ctx, job.id, material)
        return material

    async def _issue_failed(self, job: Job, spec: CertificateSpec, attempt: int, exc: RenewerError) -> None:
        cfg = self.config()
        now = self.clock()
        detail = failure_detail(exc)
        if isinstance(exc, ChallengeFailed):
            events = failure_events(ledger_request(spec), [exc.domain], now, job.id)
            await self.store.call(self.store.record_ledger, events)
        if isinstance(exc, NotDue | PendingManual) or attempt >= cfg.worker.max_attempts:
            why = "needs a human" if isinstance(exc, PendingManual) else f"after {attempt} attempt(s)"
            await self._finish(job, spec, State.FAILED, f"issuance failed {why}: {detail}")
            return
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        when = next_attempt_at(attempt, now, cfg.worker.backoff_base, cfg.worker.backoff_max, self.rand(), retry_after)
        await self._move(job, State.QUEUED, f"issuance failed ({detail}); retry at {when.isoformat()}",
                         not_before=when, last_error=_tail(detail, 2000), lease_owner=None, lease_expires=None)
        await self._attempted(spec, detail)
        log.warning("job %s (%s): issuance attempt %d of %d failed, retry at %s: %s", job.id, spec.id, attempt,
                    cfg.worker.max_attempts, when.isoformat(), _tail(detail))

    async def _deploy(self, job: Job, spec: CertificateSpec, material: IssuedMaterial) -> None:
        cfg = self.config()
        deploy_attempt = job.deploy_attempt + 1

        async def on_stage(stage: str) -> None:
            if stage == "installing":
                await self._move(job, State.INSTALLING, f"installing (deploy attempt {deploy_attempt})",
                                 deploy_attempt=deploy_attempt, material_ref=f"material/{job.id}.sealed")
            elif stage == "verifying":
                await self._move(job, State.VERIFYING, "deploy steps done; verifying the served leaf")

        try:
            result = await install.deploy(material, spec, self.ctx, on_stage=on_stage)
        except RolledBack as exc:
            detail = f"rolled back: {exc.reason}"
            if deploy_attempt >= cfg.worker.max_attempts:
                await self._finish(job, spec, State.ROLLED_BACK, f"{detail} (after {deploy_attempt} deploy attempts)")
                return
            now = self.clock()
            when = next_attempt_at(deploy_attempt, now, cfg.worker.backoff_base, cfg.worker.backoff_max, self.rand())
            await self._move(job, State.QUEUED, f"{detail}; deployment retried at {when.isoformat()} (no re-issue)",
                             not_before=when, last_error=_tail(detail, 2000), lease_owner=None, lease_expires=None)
            await self._attempted(spec, detail)
            log.warning("job %s (%s): deploy attempt %d of %d %s; retry at %s", job.id, spec.id, deploy_attempt,
                        cfg.worker.max_attempts, _tail(detail), when.isoformat())
            return
        except RollbackFailed as exc:
            await self._finish(job, spec, State.FAILED, f"ROLLBACK FAILED, live files may be broken: {exc.reason}")
            return
        await self._finish(
            job, spec, State.SUCCEEDED,
            f"verified: leaf {result.fingerprint[:16]}... served by {len(result.endpoints)} endpoint(s)",
            material=material,
        )

    async def _attempted(self, spec: CertificateSpec, error: str) -> None:
        await self.store.call(self.store.update_certificate_state, spec.id, self.clock(),
                              last_attempt_at=self.clock(), last_error=_tail(error, 2000))

    async def _finish(
        self, job: Job, spec: CertificateSpec | None, state: State, reason: str,
        material: IssuedMaterial | None = None,
    ) -> None:
        now = self.clock()
        extra: dict[str, object] = {} if state is State.SUCCEEDED else {"last_error": _tail(reason, 2000)}
        values: dict[str, object] = {"last_attempt_at": now, "last_result": state.value, "last_job_id": job.id}
        if state is State.SUCCEEDED:
            values.update(last_success_at=now, last_error=None)
            if material is not None and spec is not None:
                not_before, not_after = _validity(material)
                values.update(not_after=not_after, next_due=renewal_due_at(spec, not_before, not_after))
        else:
            values["last_error"] = _tail(reason, 2000)
        # The job closes and the certificate's state records why in one transaction: a webhook arriving in
        # between must not see "no open job, no recent success" and issue again.
        await self._move(job, state, reason, certificate_state=values, **extra)
        name = spec.id if spec is not None else job.certificate
        if state is State.SUCCEEDED:
            log.info("job %s (%s): %s: %s", job.id, name, state.value, reason)
        else:
            log.error("job %s (%s): %s: %s", job.id, name, state.value, _tail(reason))
        if spec is None:
            return
        with contextlib.suppress(OSError, ValueError):
            pipeline.discard_material(self.ctx, job.id)
        self.metrics.renewals.labels(spec.id, spec.issuer.type, state.value).inc()
        if state is State.SUCCEEDED:
            self.metrics.renewal_duration.labels(spec.issuer.type).observe((now - job.created_at).total_seconds())


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _validity(material: IssuedMaterial) -> tuple[datetime, datetime]:
    leaf = x509.load_pem_x509_certificate(material.cert_pem)
    return leaf.not_valid_before_utc, leaf.not_valid_after_utc
