"""The renewer's HTTP API on :mod:`certloop.httpserver`: webhook intake, manual renewals, state, metrics.

Alertmanager retry semantics: 202 once queued (or deliberately ignored), 400 malformed, 401 bad auth,
413 too large (never retried by Alertmanager), 503 only when the job store cannot take the job.
Everything under ``/api/v1/`` and ``/-/reload`` needs the bearer token (constant-time compare) and/or
a client certificate, checked before a byte of the request body is read; ``/metrics``, ``/-/healthy``,
``/-/ready`` and the OpenAPI document do not.
The token is never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from certloop import __version__
from certloop.errors import ConfigError, HttpError
from certloop.httpserver import Handler, Request, Response
from certloop.landing import landing_page
from certloop.renewer.access import Access, Permission, Principal
from certloop.renewer.audit import AuditTrail
from certloop.renewer.config import RenewerConfig
from certloop.renewer.errors import PayloadError, StoreUnavailable
from certloop.renewer.intake import summary, triage
from certloop.renewer.metrics import CertificateSnapshot, RenewerMetrics, Snapshot
from certloop.renewer.openapi import OPENAPI
from certloop.renewer.ratelimit import headroom, ledger_request
from certloop.renewer.records import AuditEvent, Enqueued, EnqueueItem, JobEvent, State
from certloop.renewer.scheduler import installed_facts, next_due
from certloop.renewer.served import EndpointLook, ServedLeaves, judge
from certloop.renewer.spec import CERTIFICATE_ID_PATTERN, should_renew
from certloop.renewer.store import Store

__all__ = ["ROUTES", "Api", "EnqueueBatcher"]

log = logging.getLogger(__name__)
MAX_JOB_ID = 2**31 - 1  # jobs.id is a 32-bit INTEGER on PostgreSQL and MariaDB: larger ids cannot exist
_JOB_ID = re.compile(r"[0-9]{1,64}")
_CERTIFICATE_ID = re.compile(CERTIFICATE_ID_PATTERN)
_STATES = frozenset(s.value for s in State)


def parse_job_id(text: str) -> int | None:
    """A job id from a URL: ASCII digits only (``int()`` also takes ``+5``, ``1_0`` and other scripts'
    digits), so what reaches the database is always a plain non-negative integer."""
    return int(text) if _JOB_ID.fullmatch(text) else None


class EnqueueBatcher:
    """Group commit for webhook enqueues: the requests that arrive while one transaction runs share the next.

    Each caller awaits its own slice of :meth:`Store.enqueue_many`'s outcomes. Nothing waits on a timer:
    an idle store takes a lone request at once (one loop turn later, so requests of the same turn join
    it); under load one transaction and one thread hop serve every request queued meanwhile (at most
    ``max_items`` alerts). A store failure fails exactly the requests of that batch.
    """

    def __init__(self, store: Store, max_items: int = 256) -> None:
        self.store = store
        self.max_items = max_items
        self._pending: list[tuple[Sequence[EnqueueItem], asyncio.Future[list[Enqueued]]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # transactions run (tests and profiles look at it)

    async def enqueue(self, items: Sequence[EnqueueItem]) -> list[Enqueued]:
        fut: asyncio.Future[list[Enqueued]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        batch: list[tuple[Sequence[EnqueueItem], asyncio.Future[list[Enqueued]]]] = []
        try:
            while self._pending:
                batch, size = [], 0
                while self._pending and (not batch or size + len(self._pending[0][0]) <= self.max_items):
                    entry = self._pending.pop(0)
                    if entry[1].done():  # its request gave up waiting (answered 503): nothing to do
                        continue
                    batch.append(entry)
                    size += len(entry[0])
                if not batch:
                    continue
                self.batches += 1
                try:
                    results = await self.store.call(self.store.enqueue_many, [i for items, _ in batch for i in items])
                except Exception as exc:  # handed to each waiting request: StoreUnavailable -> 503, a bug -> 500
                    _fail(batch, exc)
                    continue
                start = 0
                for items, fut in batch:
                    if not fut.done():  # a caller that went away (client disconnect) just misses its slice
                        fut.set_result(results[start:start + len(items)])
                    start += len(items)
                batch = []
        except BaseException as exc:  # cancelled (shutdown): nobody may wait forever
            _fail(batch + self._pending, StoreUnavailable("enqueue", f"intake stopped: {exc!r}"))
            self._pending.clear()
            raise


def _fail(batch: Sequence[tuple[object, asyncio.Future[list[Enqueued]]]], exc: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(exc)


@dataclass
class Api:
    store: Store
    config: Callable[[], RenewerConfig]
    access: Callable[[], Access]
    metrics: RenewerMetrics
    clock: Callable[[], datetime]
    wake: Callable[[], None]
    reload: Callable[[], Awaitable[None]]
    served: ServedLeaves  # what the verify endpoints serve now (the daemon's cache, renewer.served)
    lifecycle: bool = False  # --web.enable-lifecycle: POST /-/reload answers 403 without it (SIGHUP always works)
    _batcher: EnqueueBatcher | None = field(default=None, init=False, repr=False)
    _audit: AuditTrail | None = field(default=None, init=False, repr=False)
    _ids: tuple[RenewerConfig | None, frozenset[str]] = field(default=(None, frozenset()), init=False, repr=False)

    def _configured(self, cfg: RenewerConfig) -> frozenset[str]:
        """The configured certificate ids, computed once per config object (configs are immutable)."""
        if self._ids[0] is not cfg:
            self._ids = (cfg, frozenset(c.id for c in cfg.certificates))
        return self._ids[1]

    @property
    def batcher(self) -> EnqueueBatcher:
        if self._batcher is None:
            self._batcher = EnqueueBatcher(self.store)
        return self._batcher

    @property
    def audit(self) -> AuditTrail:
        if self._audit is None:
            self._audit = AuditTrail(self.store, self.metrics, self.clock)
        return self._audit

    def audit_event(self, req: Request, principal: Principal | None, action: str, status: int,
                    target: str | None, detail: str | None = None) -> AuditEvent:
        """An audit line for ``req``: the principal's name and role (never a credential), its address."""
        return AuditEvent(self.clock(), principal.name if principal else None,
                          (principal.role if principal else None), action, target, req.peer, status, detail)

    # -- auth -------------------------------------------------------------------------------------

    def _refused(self, req: Request, principal: Principal | None) -> Response:
        if principal is None:
            resp = Response.error(401, "missing or wrong credentials")
            resp.headers.append(("WWW-Authenticate", self.access().challenge()))
            return resp
        return Response.error(403, f"{principal.name} (role {principal.role or 'none'}) may not do this")

    async def guard(self, handler: Handler, permission: Permission | None, action: str | None,
                    req: Request) -> Response:
        """Run ``handler`` when the caller's role carries ``permission`` (None: open to everyone).

        Refusals (401/403) go to the audit trail (bounded per minute); so does every call of a
        state-changing route (``action``: renew, retry, reload), whatever its answer, before it is sent."""
        if permission is None:
            return await handler(req)
        access = self.access()
        principal = await access.identify(req)
        if principal is None or not principal.may(permission):
            response = self._refused(req, principal)
            if permission == "webhook":
                self.metrics.webhook_requests.labels(str(response.status)).inc()
            self.note_refusal(req, principal, response)
            return response
        req.principal = principal
        response = await handler(req)
        if action is not None:
            await self.audit.record(self.audit_event(req, principal, action, response.status,
                                                     _target(req, action), _detail(response)))
        return response

    def note_refusal(self, req: Request, principal: Principal | None, response: Response) -> None:
        self.audit.refused(self.audit_event(req, principal, "refused", response.status,
                                            f"{req.method} {req.path}", _detail(response)))

    # -- webhook ----------------------------------------------------------------------------------

    async def alertmanager(self, req: Request) -> Response:
        resp = await self._alertmanager(req)
        self.metrics.webhook_requests.labels(str(resp.status)).inc()
        return resp

    async def _alertmanager(self, req: Request) -> Response:
        cfg = self.config()
        try:  # only now, after the token check: an unauthenticated client's body is never read
            body = await req.read(cfg.max_body)
        except HttpError as exc:  # 413 over max_body, 408 too slow, 400 malformed
            return Response.error(exc.status, exc.message)
        try:
            tri = triage(body, configured=self._configured(cfg), renew_on=cfg.alerts.renew_on,
                         label=cfg.alerts.label)
        except PayloadError as exc:
            return Response.error(400, exc.message)
        now = self.clock()
        items = [
            EnqueueItem(r.certificate, "alert", f"alert {r.alertname} firing (fingerprint {r.fingerprint or 'none'})",
                        now, r.starts_at, "alertmanager")
            for r in tri.requests
        ]
        try:
            # One deadline for the whole wait (a batch in flight, then ours): Alertmanager gets its 503 in
            # time to retry, and a late commit of these items is harmless (deliveries are idempotent).
            results = await asyncio.wait_for(self.batcher.enqueue(items), self._deadline()) if items else []
        except TimeoutError:
            log.error("webhook: cannot queue %s: the job store did not answer in time",
                      ", ".join(i.certificate for i in items))
            return Response.error(503, "cannot queue the renewal now (job store unavailable); retry")
        except StoreUnavailable as exc:
            log.error("webhook: cannot queue %s: %s", ", ".join(i.certificate for i in items), exc)
            return Response.error(503, "cannot queue the renewal now (job store unavailable); retry")
        outcomes = {i.certificate: "queued" if res.created else "duplicate"
                    for i, res in zip(items, results, strict=True)}
        for outcome in outcomes.values():
            self.metrics.alerts.labels(outcome).inc()
        for ignored in tri.ignored:
            self.metrics.alerts.labels(ignored.outcome).inc()
        if "queued" in outcomes.values():
            self.wake()
            principal = req.principal if isinstance(req.principal, Principal) else None
            queued = ", ".join(sorted(c for c, o in outcomes.items() if o == "queued"))
            self.audit.later(self.audit_event(req, principal, "webhook", 202, queued, "queued by an alert"))
        return Response.json(summary(tri, outcomes), 202)

    # -- certificates and jobs --------------------------------------------------------------------

    async def renew(self, req: Request) -> Response:
        force = (req.arg("force") or "").lower() in {"1", "true", "yes"}
        status, doc = await self.renew_now(req, req.params["id"], force=force)
        return Response.json(doc, status)

    async def renew_now(self, req: Request, cert_id: str, *, force: bool = True) -> tuple[int, dict[str, Any]]:
        """Queue a manual renewal of ``cert_id`` for the caller of ``req``: (HTTP status, answer).
        Shared by the API and the status page's "renew now" button."""
        spec = self.config().spec(cert_id)
        if spec is None:
            return 404, _error(404, "no such certificate in the configuration")
        live = installed_facts(spec)
        if not force and live is not None and not should_renew(spec, live, self.clock()):
            due = next_due(spec, live, self.clock()).isoformat()
            return 409, _error(409, f"not due until {due} (renew_before {spec.renew_before}); add ?force=true")
        try:
            res = await self.store.call(
                self.store.enqueue, cert_id, trigger="manual",
                reason="manual renewal" + (" (forced)" if force else ""), now=self.clock(), force=force,
                actor=_actor(req),
            )
        except StoreUnavailable:
            return 503, _error(503, "job store unavailable; retry")
        if res.created:
            self.wake()
        return 202, {"certificate": cert_id, "job_id": res.job_id, "created": res.created}

    async def retry(self, req: Request) -> Response:
        status, doc = await self.retry_job(req, req.params["id"])
        return Response.json(doc, status)

    async def retry_job(self, req: Request, job_text: str) -> tuple[int, dict[str, Any]]:
        """Queue again the certificate of a failed or rolled-back job (an open job of it is returned):
        (HTTP status, answer). Shared by the API and the status page's "retry" button."""
        job_id = parse_job_id(job_text)
        if job_id is None:
            return 400, _error(400, "job id: expected a positive integer")
        if job_id > MAX_JOB_ID:
            return 404, _error(404, "no such job")
        try:
            job = await self.store.call(self.store.get_job, job_id)
            if job is None:
                return 404, _error(404, "no such job")
            if job.certificate not in self._configured(self.config()):
                return 409, _error(409, f"certificate {job.certificate} is no longer in the configuration")
            job, res = await self.store.call(self.store.retry, job_id, now=self.clock(), actor=_actor(req))
        except StoreUnavailable:
            return 503, _error(503, "job store unavailable; retry")
        if job is None:
            return 404, _error(404, "no such job")
        if res is None:
            return 409, _error(409, f"job {job_id} is {job.state.value}: only a failed or rolled-back job "
                                    "can be retried")
        if res.created:
            self.wake()
        return 202, {"certificate": job.certificate, "job_id": res.job_id, "created": res.created,
                     "retry_of": job_id}

    async def audit_trail(self, req: Request) -> Response:
        try:
            limit = max(1, min(int(req.arg("limit", "100") or "100"), 1000))
            before_arg = req.arg("before")
            before = int(before_arg) if before_arg is not None else None
        except ValueError:
            return Response.error(400, "limit, before: expected integers")
        try:
            events = await self.store.call(self.store.audit, limit=limit, before=before)
        except StoreUnavailable:
            return Response.error(503, "job store unavailable; retry")
        return Response.json({"events": [e.as_dict() for e in events]})

    async def certificates(self, req: Request) -> Response:
        try:
            states = await self.store.call(self.store.certificate_states)
            open_jobs = {j.certificate: j for j in await self.store.call(self.store.list_jobs, limit=1000)
                         if j.state.value in {"queued", "issuing", "installing", "verifying"}}
            now = self.clock()
            # why a queued job is not worked yet (a rate limit, a backoff): its last transition's reason
            waiting: dict[str, JobEvent | None] = {}
            for cert_id, open_job in open_jobs.items():
                if open_job.state.value == "queued" and open_job.not_before > now:
                    trail = await self.store.call(self.store.events, open_job.id)
                    waiting[cert_id] = trail[-1] if trail else None
        except StoreUnavailable:
            return Response.error(503, "job store unavailable; retry")
        cfg = self.config()
        installed = {spec.id: installed_facts(spec) for spec in cfg.certificates}
        looks = await self.served.look(cfg.certificates, {k: v.fingerprint_sha256 if v else None
                                                          for k, v in installed.items()})
        out = []
        for spec in cfg.certificates:
            live = installed[spec.id]
            st = states.get(spec.id)
            job = open_jobs.get(spec.id)
            out.append({
                "id": spec.id,
                "domains": spec.domains,
                "issuer": spec.issuer.type,
                "not_after": _iso(live.not_after if live else None),
                "fingerprint_sha256": live.fingerprint_sha256 if live else None,
                "next_due": _iso(next_due(spec, live, now)),
                "last_attempt": _iso(st.last_attempt_at if st else None),
                "last_success": _iso(st.last_success_at if st else None),
                "last_result": st.last_result if st else None,
                "last_error": st.last_error if st else None,
                "open_job": None if job is None else {
                    "id": job.id, "state": job.state.value, "not_before": _iso(job.not_before),
                    "waiting": _waiting(waiting.get(spec.id)),
                },
                "served": _served(live.fingerprint_sha256 if live else None, looks[spec.id]),
            })
        return Response.json({"certificates": out})

    async def jobs(self, req: Request) -> Response:
        try:
            limit = max(1, min(int(req.arg("limit", "100") or "100"), 1000))
        except ValueError:
            return Response.error(400, "limit: expected an integer")
        certificate, state = req.arg("certificate"), req.arg("state")
        if certificate is not None and not _CERTIFICATE_ID.fullmatch(certificate):
            return Response.error(400, "certificate: expected a certificate id (letters, digits, _ . -)")
        if state is not None and state not in _STATES:
            return Response.error(400, f"state: expected one of {', '.join(sorted(_STATES))}")
        try:
            jobs = await self.store.call(self.store.list_jobs, certificate=certificate, state=state, limit=limit)
        except StoreUnavailable:
            return Response.error(503, "job store unavailable; retry")
        return Response.json({"jobs": [j.as_dict() for j in jobs]})

    async def job(self, req: Request) -> Response:
        job_id = parse_job_id(req.params["id"])
        if job_id is None:
            return Response.error(400, "job id: expected a positive integer")
        if job_id > MAX_JOB_ID:
            return Response.error(404, "no such job")
        try:
            job = await self.store.call(self.store.get_job, job_id)
            events = await self.store.call(self.store.events, job_id) if job else []
        except StoreUnavailable:
            return Response.error(503, "job store unavailable; retry")
        if job is None:
            return Response.error(404, "no such job")
        return Response.json({**job.as_dict(), "events": [e.as_dict() for e in events]})

    # -- operations -------------------------------------------------------------------------------

    def _deadline(self) -> float | None:
        """How long a request may wait on the store in all (None: no deadline)."""
        return None if self.store.timeout is None else self.store.timeout.total_seconds()

    async def metrics_page(self, req: Request) -> Response:
        up = 0
        try:
            await asyncio.wait_for(self.refresh_metrics(), self._deadline())
            up = 1
        except TimeoutError:
            log.warning("metrics: the job store did not answer in time, serving the last snapshot")
        except StoreUnavailable as exc:
            log.warning("metrics: job store unavailable, serving the last snapshot: %s", exc)
        self.metrics.database_up.set(up)
        self.metrics.set_pool(self.store.pool_stats())
        return Response(200, self.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")

    async def refresh_metrics(self) -> None:
        cfg = self.config()
        now = self.clock()
        stats = await self.store.call(self.store.queue_stats, now)
        states = await self.store.call(self.store.certificate_states)
        longest = max((r.window for r in cfg.rate_limits), default=timedelta(0))
        ledger = await self.store.call(self.store.ledger, now - longest)
        certs: dict[str, CertificateSnapshot] = {}
        for spec in cfg.certificates:
            st = states.get(spec.id)
            live = installed_facts(spec)
            certs[spec.id] = CertificateSnapshot(
                not_after=live.not_after if live else None,
                next_due=next_due(spec, live, now),
                last_attempt=st.last_attempt_at if st else None,
                last_success=st.last_success_at if st else None,
                last_result=st.last_result if st else None,
            )
        room = headroom(cfg.rate_limits, ledger, {ledger_request(s) for s in cfg.certificates}, now)
        self.metrics.set_snapshot(Snapshot(stats.queued, stats.in_progress, stats.oldest_queued, certs, room))

    async def healthy(self, req: Request) -> Response:
        return Response.text("certloop renewer is healthy.\n")

    async def ready(self, req: Request) -> Response:
        try:
            await self.store.call(self.store.ping)
        except StoreUnavailable:
            return Response.text("job store unavailable\n", 503)
        return Response.text("certloop renewer is ready.\n")

    async def do_reload(self, req: Request) -> Response:
        if not self.lifecycle:
            return Response.error(403, "lifecycle API is not enabled: start with --web.enable-lifecycle, "
                                       "or send SIGHUP to reload")
        try:
            await self.reload()
        except ConfigError as exc:
            return Response.error(500, f"config not reloaded, the previous one stays active: {exc}")
        return Response.text("config reloaded\n")

    async def openapi(self, req: Request) -> Response:
        return Response.json({**OPENAPI, "info": {**OPENAPI["info"], "version": __version__}})

    async def landing(self, req: Request) -> Response:
        return Response(200, _LANDING, "text/html; charset=utf-8")


def _actor(req: Request) -> str:
    """Who asked, for the job's trail: the principal's name (never a secret)."""
    principal = req.principal
    return f"api:{principal.name}" if isinstance(principal, Principal) else "api"


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": message, "status": status}


def _target(req: Request, action: str) -> str | None:
    if action == "renew":
        return req.params.get("id")
    if action == "retry":
        return f"job {req.params.get('id', '')}"
    return None


def _detail(response: Response) -> str | None:
    """What an answer said, for the audit line: the job it queued, or its error message."""
    if response.content_type != "application/json" or len(response.body) > 4096:
        return None
    try:
        doc = json.loads(response.body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("job_id") is not None:
        return f"job {doc['job_id']}" + ("" if doc.get("created") else " (already open)")
    error = doc.get("error")
    return str(error) if error is not None else None


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _served(installed: str | None, endpoints: tuple[EndpointLook, ...]) -> dict[str, Any]:
    """What the verify endpoints serve now, and the verdict against the installed leaf's fingerprint."""
    verdict = judge(installed, endpoints)
    return {
        "state": verdict.state.value, "drift": verdict.drift, "probe_failed": verdict.failed,
        "endpoints": [{
            "endpoint": ep.endpoint, "server_name": ep.server_name, "probed_at": _iso(ep.probed_at),
            "probing": ep.probing,
            "addresses": [{
                "address": a.address,
                "fingerprint_sha256": a.leaf.fingerprint_sha256 if a.leaf else None,
                "not_after": _iso(a.leaf.not_after if a.leaf else None),
                "serial": a.leaf.serial if a.leaf else None,
                "reason": a.reason.value if a.reason else None,
                "detail": a.detail,
            } for a in ep.addresses],
        } for ep in endpoints],
    }


def _waiting(event: JobEvent | None) -> str | None:
    """The reason a queued job waits, as its last transition recorded it (``waiting: rate limit ...``)."""
    return None if event is None else event.reason


_LANDING = landing_page("certloop renewer", (
    ("/status", "the status page: certificates, days left, jobs, the audit trail (sign in)"),
    ("/api/v1/openapi.json", "the API, as an OpenAPI 3.1 document"),
    ("/api/v1/certificates", "managed certificates and their state (needs a token or client certificate)"),
    ("/api/v1/jobs", "renewal jobs, newest first (needs a token or client certificate)"),
    ("/metrics", "Prometheus metrics"),
    ("/-/healthy", "liveness"),
    ("/-/ready", "readiness: the job store answers"),
))

# (method, path, Api method, permission): the one table of routes (the OpenAPI test checks the document
# against it). None: open to everyone (health, the OpenAPI document); "metrics" is open unless people sign
# in (--web.config.file basic_auth_users), then it needs any role.
ROUTES: tuple[tuple[str, str, str, Permission | None], ...] = (
    ("POST", "/api/v1/alertmanager", "alertmanager", "webhook"),
    ("POST", "/api/v1/certificates/{id}/renew", "renew", "renew"),
    ("POST", "/api/v1/jobs/{id}/retry", "retry", "renew"),
    ("GET", "/api/v1/audit", "audit_trail", "read"),
    ("GET", "/api/v1/certificates", "certificates", "read"),
    ("GET", "/api/v1/jobs", "jobs", "read"),
    ("GET", "/api/v1/jobs/{id}", "job", "read"),
    ("GET", "/api/v1/openapi.json", "openapi", None),
    ("GET", "/", "landing", None),
    ("GET", "/metrics", "metrics_page", None),
    ("GET", "/-/healthy", "healthy", None),
    ("GET", "/-/ready", "ready", None),
    ("POST", "/-/reload", "do_reload", "reload"),
)
