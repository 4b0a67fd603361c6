"""The exporter's HTTP endpoints on the shared :class:`certloop.httpserver.HttpServer`.

``GET /metrics``  the inventory cache plus the exporter's own series (never waits on the network)
``GET /probe``    probe one target now (see :mod:`exporter.probe`)
``GET /-/healthy`` 200 while the process runs
``GET /-/ready``   200 after the first complete sweep of every source, else 503
``POST /-/reload`` re-read the config file: 200, or 500 with the reason (the old config keeps running)
"""

from __future__ import annotations

from certloop.httpserver import HttpServer, Request, Response, Router
from exporter import metrics as m
from exporter.engine import Engine
from exporter.probe import ProbeHandler

__all__ = ["build_server"]

_LANDING = """<html><head><title>certloop exporter</title></head><body>
<h1>certloop exporter</h1>
<ul><li><a href="/metrics">/metrics</a> (inventory)</li>
<li><a href="/probe?target=example.com:443">/probe?target=host:port&amp;module=NAME</a></li>
<li><a href="/-/healthy">/-/healthy</a>, <a href="/-/ready">/-/ready</a></li></ul>
</body></html>
"""


def build_server(engine: Engine) -> HttpServer:
    """An (unstarted) HTTP server routing the exporter's endpoints to ``engine``."""

    async def metrics(_: Request) -> Response:
        return Response(200, engine.exposition(), m.CONTENT_TYPE)

    async def healthy(_: Request) -> Response:
        return Response.text("Healthy\n")

    async def ready(_: Request) -> Response:
        if engine.ready:
            return Response.text("Ready\n")
        return Response.text("Not ready: the first sweep is still running\n", 503)

    async def reload(_: Request) -> Response:
        ok, message = await engine.reload()
        return Response.text(f"{message}\n", 200 if ok else 500)

    async def landing(_: Request) -> Response:
        return Response(200, _LANDING.encode(), "text/html; charset=utf-8")

    router = Router({
        ("GET", "/"): landing,
        ("GET", "/metrics"): metrics,
        ("GET", "/probe"): ProbeHandler(lambda: engine.ctx),
        ("GET", "/-/healthy"): healthy,
        ("GET", "/-/ready"): ready,
        ("POST", "/-/reload"): reload,
        ("PUT", "/-/reload"): reload,
    })
    return HttpServer(router, server_header="certloop-exporter")
