"""``/probe?target=host:port&module=NAME[&server_name=NAME]``: probe one endpoint now, as blackbox does.

Each answer holds only its own result (a per-request registry in effect: no series of another
request can leak into it; an answer's text may be reused from an earlier one that showed exactly the
same things, see :func:`probe_body`). The output uses the inventory's metric names with
``source="endpoint"``, so one rule set covers both modes. Prometheus' scrape timeout header
(``X-Prometheus-Scrape-Timeout-Seconds``) bounds the probe so the answer arrives in time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from certloop.bounded import remember
from certloop.exporter import metrics as m
from certloop.exporter.config import DEFAULT_MODULE
from certloop.exporter.report import ExporterCaches, TargetReport, render
from certloop.exporter.sources.base import Context
from certloop.exporter.sources.endpoints import probe_endpoint, spec_for
from certloop.httpserver import Request, Response

__all__ = ["ProbeHandler", "probe_body", "render_probe"]

_TIMEOUT_HEADER = "x-prometheus-scrape-timeout-seconds"
_MARGIN = 0.5  # seconds kept back from Prometheus' scrape timeout to write the answer


def render_probe(fragments: m.Fragments) -> bytes:
    """The exposition body of one probe's fragments."""
    return m.merge((fragments,))


_MARK = 0.125
"""A duration whose sample text (``0.125``) stands in for the real one in a cached answer."""


def probe_body(report: TargetReport, caches: ExporterCaches) -> bytes:
    """The exposition body of one ``/probe`` report: exactly ``render_probe(render(report, ...))``.

    The common answer (one address that presented a chain) differs from the last answer for the same
    target only in its duration while the chain, verdict and TLS parameters stay, so its text is kept
    split around the duration value and joined again: a dictionary hit instead of rendering a dozen
    families. The key is everything else the answer shows; a test renders both ways and compares.
    """
    if len(report.observations) != 1 or report.observations[0].chain is None:
        return render_probe(render(report, caches, reuse=True))
    obs = report.observations[0]
    chain = obs.chain
    assert chain is not None
    key = (report.source, report.target, report.labels, report.consistent, obs.source, obs.address, obs.success,
           obs.reason, obs.hostname_match, obs.tls_version, obs.cipher, obs.expect_file, obs.matches_file,
           tuple(f.fingerprint_sha256 for f in chain.facts), chain.roles, chain.verdict)
    parts = caches.probe_bodies.get(key)
    if parts is None:
        marked = report._replace(observations=(obs._replace(duration=_MARK),))
        body = render_probe(render(marked, caches, reuse=True))
        line = f"{m.PROBE_DURATION.name}{{".encode()
        start = body.index(line)
        at = body.index(f"}} {m.format_value(_MARK)}\n".encode(), start) + 2
        parts = remember(caches.probe_bodies, key, (body[:at], body[at + len(m.format_value(_MARK)):]))
    return parts[0] + m.format_value(obs.duration).encode() + parts[1]


class ProbeHandler:
    """The /probe route; ``context()`` gives the current config's context (it changes on reload)."""

    def __init__(self, context: Callable[[], Context]) -> None:
        self.context = context

    async def __call__(self, request: Request) -> Response:
        ctx = self.context()
        target = request.arg("target")
        if not target:
            return Response.text("target parameter is missing\n", 400)
        module_name = request.arg("module") or DEFAULT_MODULE
        if module_name != DEFAULT_MODULE and module_name not in ctx.config.modules:
            return Response.text(f"unknown module {module_name!r}\n", 400)
        try:
            spec = spec_for(ctx, target, ctx.config.module(module_name), server_name=request.arg("server_name"))
        except ValueError as exc:
            return Response.text(f"bad target: {exc}\n", 400)
        budget = _budget(request.headers.get(_TIMEOUT_HEADER))
        if budget is not None:
            # connect and handshake run one after the other: each gets at most half of the budget
            half = max(budget / 2, 0.05)
            spec = replace(
                spec,
                connect_timeout=min(spec.connect_timeout, half),
                handshake_timeout=min(spec.handshake_timeout, half),
            )
        report = await probe_endpoint(spec, ctx)
        return Response(200, probe_body(report, ctx.caches), m.CONTENT_TYPE)


def _budget(header: str | None) -> float | None:
    if not header:
        return None
    try:
        value = float(header)
    except ValueError:
        return None
    return value - _MARGIN if value > 2 * _MARGIN else value / 2
