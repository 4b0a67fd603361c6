"""The renewer's status page: server-rendered HTML (Jinja2, autoescaped), readable without JavaScript.

    /status                             every certificate, the timeline, recent renewals, the audit trail
    /status/jobs/{id}                   one job's event trail (refreshes itself while the job is open)
    POST /status/certificates/{id}/renew  "renew now"  (role operator or admin, CSRF token)
    POST /status/jobs/{id}/retry          "retry"      (role operator or admin, CSRF token)

Roles are checked by the API's guard before a handler runs (:data:`PAGE_ROUTES` names the permission).
CSRF: a form carries ``csrf``, a token bound to the signed-in principal, valid 12 hours, signed with
the secret every replica shares (:mod:`renewer.csrf`); a POST without it, with another user's, a
tampered or an expired one is refused 403 and audited.

What must stay true: every value shown passes through the template engine's escaping (certificate ids,
reasons and error texts can hold anything a CA or a config wrote), buttons are shown only to roles that
may use them, and a state-changing POST is audited whatever its answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2

from certloop import __version__
from certloop.errors import FailureReason, HttpError
from certloop.httpserver import Request, Response
from certloop.renewer.access import Permission, Principal
from certloop.renewer.api import MAX_JOB_ID, Api, parse_job_id
from certloop.renewer.csrf import WRONG, Csrf
from certloop.renewer.errors import StoreUnavailable
from certloop.renewer.i18n import LANGUAGES, Text, choose_language
from certloop.renewer.records import OPEN_STATES, Job, JobEvent, State
from certloop.renewer.scheduler import installed_facts, next_due
from certloop.renewer.served import EndpointLook, judge
from certloop.renewer.timeline import timeline

__all__ = ["PAGE_ROUTES", "StatusPage"]

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,  # every template, whatever its name: HTML and the inline SVG alike
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_HEADERS = [
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]
MAX_FORM = 4096
# catalogue keys (renewer/i18n.py) of the page's own messages
_NOTHING = "nothing was queued"
_CSRF_WRONG = ("This form did not come from this page (CSRF token missing or wrong). Reload the status page and "
               "press the button again.")
_CSRF_EXPIRED = ("This form is older than the {hours} hours a form is valid (CSRF token expired). Reload the "
                 "status page and press the button again.")
# why a probe of a served leaf failed, for people (the API gives the FailureReason value)
_REASON_TEXT = {
    FailureReason.DNS: "the name did not resolve",
    FailureReason.CONNECT: "could not connect",
    FailureReason.REFUSED: "connection refused",
    FailureReason.TIMEOUT: "probe timed out",
    FailureReason.HANDSHAKE: "TLS handshake failed",
    FailureReason.STARTTLS: "STARTTLS failed",
    FailureReason.NO_CERTIFICATE: "no certificate presented",
    FailureReason.CHAIN_TOO_LARGE: "certificate chain too large",
    FailureReason.BAD_SERVER_NAME: "the server name cannot be sent",
}


def _days(when: datetime | None, now: datetime) -> float | None:
    return None if when is None else round((when - now).total_seconds() / 86400, 1)


def _store_down(t: Text) -> str:
    return t("The job store is unavailable. Try again in a moment.")


def _no_job(t: Text) -> str:
    return t("No such job.")


def _served_lines(endpoints: tuple[EndpointLook, ...], installed: str | None, now: datetime) -> list[dict[str, Any]]:
    """One line per probed address (or per endpoint not answered yet) for the "Served now" column."""
    lines: list[dict[str, Any]] = []
    for ep in endpoints:
        if not ep.addresses:
            lines.append({"endpoint": ep.endpoint, "address": None, "pending": True, "leaf": None, "reason": None,
                          "detail": None, "days_left": None, "drift": False, "probed_at": None, "probing": False})
            continue
        host = ep.endpoint.rsplit(":", 1)[0].strip("[]")
        for a in ep.addresses:
            lines.append({
                "endpoint": ep.endpoint, "address": a.address if a.address not in (None, host) else None,
                "pending": False, "leaf": a.leaf, "reason": a.reason.value if a.reason else None, "detail": a.detail,
                "days_left": _days(a.leaf.not_after if a.leaf else None, now),
                "drift": a.leaf is not None and a.leaf.fingerprint_sha256 != installed,
                "probed_at": ep.probed_at, "probing": ep.probing,
            })
    return lines


@dataclass
class StatusPage:
    api: Api
    csrf: Csrf

    def _html(self, req: Request, template: str, status: int = 200, **context: Any) -> Response:
        """Render ``template`` in the request's language (``?lang=``, else Accept-Language, else en).
        ``q`` is the query that keeps a chosen language in links and form actions ("" when not chosen)."""
        lang, chosen = choose_language(req.arg("lang"), req.headers.get("accept-language"))
        body = _ENV.get_template(template).render(
            version=__version__, _=Text(lang), lang=lang, q=f"?lang={lang}" if chosen else "", path=req.path,
            **context)
        response = Response(status, body.encode(), "text/html; charset=utf-8", list(_HEADERS))
        response.headers.append(("Content-Language", "zh-CN" if lang == "zh" else "en"))
        response.headers.append(("Vary", "Accept-Language"))
        return response

    def _error(self, req: Request, status: int, message: Callable[[Text], str],
               principal: Principal | None = None) -> Response:
        """An error page; ``message`` words it in the page's language."""
        lang, _chosen = choose_language(req.arg("lang"), req.headers.get("accept-language"))
        return self._html(req, "error.html", status, status_code=status, message=message(Text(lang)),
                          principal=principal)

    async def status(self, req: Request) -> Response:
        principal = req.principal if isinstance(req.principal, Principal) else None
        api, now = self.api, self.api.clock()
        try:
            states = await api.store.call(api.store.certificate_states)
            recent = await api.store.call(api.store.list_jobs, limit=1000)
            audit = await api.store.call(api.store.audit, limit=50)
            last: dict[str, Job] = {}
            for recent_job in recent:  # newest first: the first one seen per certificate is its last job
                last.setdefault(recent_job.certificate, recent_job)
            waiting: dict[str, str | None] = {}
            for cert_id, last_job in last.items():
                if last_job.state is State.QUEUED and last_job.not_before > now:
                    trail = await api.store.call(api.store.events, last_job.id)
                    waiting[cert_id] = trail[-1].reason if trail else None
        except StoreUnavailable:
            return self._error(req, 503, _store_down, principal)
        cfg = api.config()
        installed = {spec.id: installed_facts(spec) for spec in cfg.certificates}
        looks = await api.served.look(cfg.certificates, {k: v.fingerprint_sha256 if v else None
                                                         for k, v in installed.items()})  # within probe_wait
        rows: list[dict[str, Any]] = []
        for spec in cfg.certificates:
            live = installed[spec.id]
            st = states.get(spec.id)
            job = last.get(spec.id)
            due = next_due(spec, live, now)
            rows.append({
                "id": spec.id, "domains": spec.domains, "issuer": spec.issuer.type,
                "not_after": live.not_after if live else None,
                "days_left": _days(live.not_after if live else None, now),
                "leaf_issuer": live.issuer if live else None, "serial": live.serial if live else None,
                "next_due": due, "due_in_days": _days(due, now), "job": job,
                "why": waiting.get(spec.id) if job and job.state is State.QUEUED else (
                    job.last_error if job and job.state in {State.FAILED, State.ROLLED_BACK} else None),
                "last_success": st.last_success_at if st else None,
                "retryable": job is not None and job.state in {State.FAILED, State.ROLLED_BACK},
                "served": _served_lines(looks[spec.id], live.fingerprint_sha256 if live else None, now),
                "verdict": judge(live.fingerprint_sha256 if live else None, looks[spec.id]),
            })
        picture = timeline([(r["id"], r["not_after"], r["next_due"]) for r in rows], now)
        renewals = [j for j in recent if j.state not in OPEN_STATES][:20]
        return self._html(req, "status.html", principal=principal, now=now, rows=rows, timeline=picture,
                          reason_text={r.value: text for r, text in _REASON_TEXT.items()},
                          renewals=renewals, audit=audit, can_renew=bool(principal and principal.may("renew")),
                          csrf=self.csrf.token(principal) if principal else "")

    async def job_page(self, req: Request) -> Response:
        principal = req.principal if isinstance(req.principal, Principal) else None
        job_id = parse_job_id(req.params["id"])
        if job_id is None or job_id > MAX_JOB_ID:
            return self._error(req, 404, _no_job, principal)
        api, now = self.api, self.api.clock()
        try:
            job = await api.store.call(api.store.get_job, job_id)
            events: list[JobEvent] = await api.store.call(api.store.events, job_id) if job else []
        except StoreUnavailable:
            return self._error(req, 503, _store_down, principal)
        if job is None:
            return self._error(req, 404, _no_job, principal)
        spec = api.config().spec(job.certificate)
        live = installed_facts(spec) if spec else None
        return self._html(
            req, "job.html", principal=principal, job=job, events=events, open=job.state in OPEN_STATES,
            not_after=live.not_after if live else None, days_left=_days(live.not_after if live else None, now),
            can_renew=bool(principal and principal.may("renew")) and job.state in {State.FAILED, State.ROLLED_BACK},
            csrf=self.csrf.token(principal) if principal else "",
        )

    async def _form(self, req: Request, principal: Principal) -> str | None:
        """The posted form's CSRF field (None when missing or unreadable)."""
        try:
            body = await req.read(MAX_FORM)
        except HttpError:
            return None
        values = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=8).get("csrf")
        return values[0] if values else None

    async def renew(self, req: Request) -> Response:
        return await self._act(req, "renew")

    async def retry(self, req: Request) -> Response:
        return await self._act(req, "retry")

    async def _act(self, req: Request, action: str) -> Response:
        principal = req.principal
        assert isinstance(principal, Principal)  # the guard let only a principal with "renew" through
        api = self.api
        target = req.params["id"] if action == "renew" else f"job {req.params['id']}"
        refused = self.csrf.check(principal, await self._form(req, principal))
        if refused is not None:
            hours = f"{self.csrf.max_age.total_seconds() / 3600:g}"
            response = self._error(req, 403, (lambda t: t(_CSRF_WRONG)) if refused == WRONG
                                   else (lambda t: t(_CSRF_EXPIRED, hours=hours)), principal)
            await api.audit.record(api.audit_event(req, principal, action, 403, target, refused))
            return response
        answer = await (api.renew_now(req, req.params["id"]) if action == "renew"
                        else api.retry_job(req, req.params["id"]))
        status, doc = answer
        detail = (f"job {doc['job_id']}" + ("" if doc.get("created") else " (already open)")
                  if "job_id" in doc else str(doc.get("error")))
        if status >= 300 or doc.get("job_id") is None:
            error = doc.get("error")
            resp = self._error(req, status if status >= 300 else 409,
                               (lambda t: t.phrase(str(error))) if error is not None else (lambda t: t(_NOTHING)),
                               principal)
        else:  # answered with the job it queued (or the open one): the browser goes to its page
            resp = self._html(req, "queued.html", 303, principal=principal, job_id=doc["job_id"],
                              certificate=doc["certificate"], created=doc["created"])
            lang = req.arg("lang")
            keep = f"?lang={lang}" if lang in LANGUAGES else ""
            resp.headers.append(("Location", f"/status/jobs/{doc['job_id']}{keep}"))
        await api.audit.record(api.audit_event(req, principal, action, resp.status, target, detail + " (status page)"))
        return resp


# (method, path, StatusPage method, permission); guarded like the API's ROUTES. Not in the OpenAPI
# document: these answer HTML for people, the API answers JSON for programs.
PAGE_ROUTES: tuple[tuple[str, str, str, Permission | None], ...] = (
    ("GET", "/status", "status", "read"),
    ("GET", "/status/jobs/{id}", "job_page", "read"),
    ("POST", "/status/certificates/{id}/renew", "renew", "renew"),
    ("POST", "/status/jobs/{id}/retry", "retry", "renew"),
)
