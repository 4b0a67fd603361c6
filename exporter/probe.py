"""``/probe?target=host:port&module=NAME[&server_name=NAME]``: probe one endpoint now, as blackbox does.

Each request renders only its own result (a per-request registry in effect: nothing is shared
between requests, so stale series cannot leak). The output uses the inventory's metric names with
``source="endpoint"``, so one rule set covers both modes. Prometheus' scrape timeout header
(``X-Prometheus-Scrape-Timeout-Seconds``) bounds the probe so the answer arrives in time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from certloop.exporter import metrics as m
from certloop.exporter.config import DEFAULT_MODULE
from certloop.exporter.report import render
from certloop.exporter.sources.base import Context
from certloop.exporter.sources.endpoints import probe_endpoint, spec_for
from certloop.httpserver import Request, Response

__all__ = ["ProbeHandler", "render_probe"]

_TIMEOUT_HEADER = "x-prometheus-scrape-timeout-seconds"
_MARGIN = 0.5  # seconds kept back from Prometheus' scrape timeout to write the answer


def render_probe(fragments: m.Fragments) -> bytes:
    """The exposition body of one probe's fragments."""
    return m.merge((fragments,))


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
        return Response(200, render_probe(render(report, ctx.caches, reuse=True)), m.CONTENT_TYPE)


def _budget(header: str | None) -> float | None:
    if not header:
        return None
    try:
        value = float(header)
    except ValueError:
        return None
    return value - _MARGIN if value > 2 * _MARGIN else value / 2
