"""The renewer's router: the API's routes (:data:`certloop.renewer.api.ROUTES`) and the status page's
(:data:`certloop.renewer.statuspage.PAGE_ROUTES`), each behind :meth:`Api.guard` with its permission.

Its own module because it composes both: the status page builds on :class:`Api`, so the composition
cannot live in ``api.py`` without an import cycle.
"""

from __future__ import annotations

import functools

from certloop.httpserver import Handler, Request, Response, Router
from certloop.renewer.access import Permission
from certloop.renewer.api import ROUTES, Api
from certloop.renewer.csrf import Csrf
from certloop.renewer.statuspage import PAGE_ROUTES, StatusPage

__all__ = ["build_router"]

# route (Api method) -> the audit action every call of it records
_AUDITED = {"renew": "renew", "retry": "retry", "do_reload": "reload"}


def build_router(api: Api, csrf: Csrf) -> Router:
    """The API's routes and the status page's, all behind :meth:`Api.guard`; ``csrf`` signs the page's
    forms (built from the replicas' shared secret, :mod:`renewer.sharedsecret`)."""
    page = StatusPage(api, csrf)

    def route(owner: object, name: str, permission: Permission | None, audited: str | None) -> Handler:
        handler: Handler = getattr(owner, name)
        if name == "metrics_page":
            return _metrics_guard(api, handler)
        return functools.partial(api.guard, handler, permission, audited)

    table = {(method, path): route(api, name, permission, _AUDITED.get(name))
             for method, path, name, permission in ROUTES}
    # the page's buttons audit themselves (with the CSRF verdict and the job they queued)
    table.update({(method, path): route(page, name, permission, None)
                  for method, path, name, permission in PAGE_ROUTES})
    api.metrics.http.expect(path for _, path in table)
    return Router(table)


def _metrics_guard(api: Api, handler: Handler) -> Handler:
    """/metrics: open as Prometheus expects, unless people sign in; then any authenticated caller."""

    async def metrics(req: Request) -> Response:
        if not api.access().signs_in_people:
            return await handler(req)
        principal = await api.access().identify(req)
        if principal is None:
            response = api._refused(req, None)
            api.note_refusal(req, None, response)
            return response
        return await handler(req)

    return metrics
