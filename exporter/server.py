"""The exporter's HTTP endpoints on the shared :class:`certloop.httpserver.HttpServer`.

``GET /metrics``  the inventory cache plus the exporter's own series (never waits on the network)
``GET /probe``    probe one target now (see :mod:`exporter.probe`)
``GET /-/healthy`` 200 while the process runs
``GET /-/ready``   200 after the first complete sweep of every source, else 503
``POST /-/reload`` re-read the config file: 200, or 500 with the reason (the old config keeps running);
                   403 unless started with ``--web.enable-lifecycle``

Probe workers (``--web.probe-workers N``): one Python process tops out near one core of
``/probe`` handshakes, so N extra processes listen on the same address with ``SO_REUSEPORT``
and the kernel spreads connections over all of them. Workers only *probe*: every other request
that lands on a worker is forwarded over loopback to the main process's private listener, so
``/metrics`` (the inventory), readiness and ``/-/reload`` always answer from the one process
that sweeps. After a successful reload the main process sends SIGHUP to its workers, which
re-read the same config file. Known limit: ``/probe`` counts made by a worker are not in the
main process's ``certloop_probes_total`` nor its ``certloop_http_requests_total`` (a worker's forwarded
requests are counted by the main process's private listener).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp

from certloop import logs
from certloop.exitcodes import ExitCode
from certloop.exporter import metrics as m
from certloop.exporter.config import load_config
from certloop.exporter.engine import Engine, build_context
from certloop.exporter.probe import ProbeHandler
from certloop.exporter.report import ExporterCaches
from certloop.exporter.sources import ProbeCounter
from certloop.exporter.sources.base import Context
from certloop.httpserver import DEFAULT_MAX_CONNECTIONS, Handler, HttpServer, Observer, Request, Response, Router
from certloop.landing import landing_page
from certloop.webconfig import WebConfigFile, guard

__all__ = ["Forwarder", "ProbeWorkers", "WorkerContext", "build_server",
           "build_worker_server", "serve_worker"]

log = logging.getLogger(__name__)

LIFECYCLE_OFF = "Lifecycle API is not enabled: start with --web.enable-lifecycle, or send SIGHUP to reload\n"
_LANDING_LINKS = (
    ("/metrics", "the inventory: every configured endpoint and file, and the exporter's own series"),
    ("/probe?target=example.com:443", "probe one endpoint now (target=host:port, module=NAME, server_name=NAME)"),
    ("/-/healthy", "liveness"),
    ("/-/ready", "readiness: 200 after the first complete sweep"),
)

_ROUTES = (("GET", "/"), ("GET", "/metrics"), ("GET", "/-/healthy"), ("GET", "/-/ready"),
           ("POST", "/-/reload"), ("PUT", "/-/reload"))
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "content-length", "transfer-encoding", "te", "upgrade"})
_NOT_FORWARDED = _HOP_BY_HOP | {"host", "expect", "accept-encoding"}
_NOT_RETURNED = _HOP_BY_HOP | {"server", "content-type", "content-encoding", "vary", "date"}
_FORWARD_TIMEOUT = 30.0
RESTART_MIN = 1.0  # seconds before a dead probe worker's slot is refilled again
RESTART_MAX = 30.0


def build_server(engine: Engine, *, on_reload: Callable[[], None] | None = None,
                 reuse_port: bool = False, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 web: WebConfigFile | None = None, enable_lifecycle: bool = False) -> HttpServer:
    """An (unstarted) HTTP server routing the exporter's endpoints to ``engine``.

    ``on_reload`` runs after each successful ``/-/reload``; ``reuse_port`` lets probe workers
    share the listening address; ``max_connections`` is ``--web.max-connections``; ``web`` is
    ``--web.config.file`` (TLS, basic authentication, headers). ``/-/reload`` answers 403 unless
    ``enable_lifecycle`` (``--web.enable-lifecycle``, off by default as in Prometheus: anyone who can reach
    the exporter could otherwise make it re-read its file); SIGHUP always reloads."""

    async def metrics(_: Request) -> Response:
        inventory, *rest = engine.exposition_parts()
        return Response(200, inventory, m.CONTENT_TYPE, more=tuple(rest))

    async def healthy(_: Request) -> Response:
        return Response.text("Healthy\n")

    async def ready(_: Request) -> Response:
        if engine.ready:
            return Response.text("Ready\n")
        return Response.text("Not ready: the first sweep is still running\n", 503)

    async def reload(_: Request) -> Response:
        if not enable_lifecycle:
            return Response.text(LIFECYCLE_OFF, 403)
        ok, message = await engine.reload()
        if ok and on_reload is not None:
            on_reload()
        return Response.text(f"{message}\n", 200 if ok else 500)

    page = landing_page("certloop exporter", _LANDING_LINKS)

    async def landing(_: Request) -> Response:
        return Response(200, page, "text/html; charset=utf-8")

    handlers: dict[tuple[str, str], Handler] = dict(zip(_ROUTES, (landing, metrics, healthy, ready, reload, reload),
                                                        strict=True))
    handlers[("GET", "/probe")] = ProbeHandler(lambda: engine.ctx)
    engine.http.expect(path for _, path in handlers)
    return _served(Router(handlers), web, reuse_port=reuse_port, max_connections=max_connections,
                   observer=engine.http)


def _served(router: Router, web: WebConfigFile | None, *, reuse_port: bool, max_connections: int,
            observer: Observer | None = None) -> HttpServer:
    """The public listener: behind ``--web.config.file`` when one is given."""
    if web is None:
        return HttpServer(router, server_header="certloop-exporter", reuse_port=reuse_port,
                          max_connections=max_connections, observer=observer)
    return HttpServer(guard(router, web), server_header="certloop-exporter", reuse_port=reuse_port,
                      max_connections=max_connections, ssl_context=web.ssl_context, observer=observer)


# -- the main process's side ----------------------------------------------------------------------


class ProbeWorkers:
    """``count`` worker processes probing on the main process's address, supervised by PID."""

    def __init__(self, count: int, config_path: str, public: tuple[str, int], private: tuple[str, int],
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, web_config: str | None = None, *,
                 expand_env: bool = False) -> None:
        self.count = count
        self.expand_env = expand_env
        self.web_config = web_config
        self.max_connections = max_connections
        self.config_path = config_path
        self.public = public
        self.private = private
        self.processes: list[subprocess.Popen[bytes]] = []
        self._started: list[float] = []  # per slot: when its current process started (monotonic)
        self._backoff: list[float] = []  # per slot: the pause before the next restart
        self._due: list[float] = []  # per slot: no restart before this time

    def argv(self) -> list[str]:
        host, port = self.public
        shown = f"[{host}]" if ":" in host else host
        return [sys.executable, "-m", "certloop.cli", "exporter", f"--config.file={self.config_path}",
                f"--web.listen-address={shown}:{port}", f"--web.probe-worker-of={self.private[0]}:{self.private[1]}",
                f"--web.max-connections={self.max_connections}", *logs.child_flags(),
                *([f"--web.config.file={self.web_config}"] if self.web_config else []),
                *(["--config.expand-env"] if self.expand_env else [])]

    def start(self) -> None:
        now = time.monotonic()
        for _ in range(self.count):
            self.processes.append(subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL))
            self._started.append(now)
            self._backoff.append(RESTART_MIN)
            self._due.append(now)
        log.info("started %d probe workers (pids %s)", self.count, ", ".join(str(p.pid) for p in self.processes))

    def restart_dead(self) -> list[int]:
        """Replace every worker that exited (OOM kill, crash): logged with its status; returns the new PIDs.

        A worker that keeps dying is restarted after a pause doubling from RESTART_MIN to RESTART_MAX
        (reset once one has lived RESTART_MAX), so a crash loop neither spins nor gives up.
        """
        now = time.monotonic()
        started = []
        for slot, process in enumerate(self.processes):
            status = process.poll()
            if status is None or now < self._due[slot]:
                continue
            if now - self._started[slot] >= RESTART_MAX:
                self._backoff[slot] = RESTART_MIN
            replacement = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL)
            log.warning("probe worker %d exited (%s); started %d in its place", process.pid,
                        f"signal {-status}" if status < 0 else f"status {status}", replacement.pid)
            self.processes[slot] = replacement
            self._started[slot] = now
            self._due[slot] = now + self._backoff[slot]
            self._backoff[slot] = min(self._backoff[slot] * 2, RESTART_MAX)
            started.append(replacement.pid)
        return started

    async def supervise(self, interval: float = 0.5) -> None:
        """:meth:`restart_dead` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.restart_dead()

    def reload(self) -> None:
        """Tell every worker to re-read the config file (after the main process accepted it)."""
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGHUP)

    def stop(self, timeout: float = 5.0) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self.processes.clear()


# -- the worker's side ----------------------------------------------------------------------------


class WorkerContext:
    """A worker's probing context: built from the config file, rebuilt on SIGHUP, no sweeps."""

    def __init__(self, config_path: str, ctx: Context, expand_env: bool = False) -> None:
        self.config_path = config_path
        self.ctx = ctx
        self.expand_env = expand_env

    def reload(self) -> None:
        try:
            self.ctx = build_context(load_config(self.config_path, expand_env=self.expand_env), self.ctx.counter,
                                     self.ctx.caches)
        except Exception:  # the main process validated this file; a race with an edit is logged
            log.exception("probe worker %d: config reload failed, keeping the running config", os.getpid())


def build_worker_server(worker: WorkerContext, forward: Forwarder,
                        max_connections: int = DEFAULT_MAX_CONNECTIONS, web: WebConfigFile | None = None) -> HttpServer:
    """A worker's server: ``/probe`` here, every other known route forwarded by ``forward`` to the main process."""
    handlers: dict[tuple[str, str], Handler] = dict.fromkeys(_ROUTES, forward)
    handlers[("GET", "/probe")] = ProbeHandler(lambda: worker.ctx)
    return _served(Router(handlers), web, reuse_port=True, max_connections=max_connections)


class Forwarder:
    """Relay one request to the main process's private listener and its answer back (aiohttp's client:
    no HTTP written by hand on this side either). Compression is left to the worker's own server."""

    def __init__(self, main: tuple[str, int]) -> None:
        self.base = f"http://{main[0]}:{main[1]}"
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, request: Request) -> Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_FORWARD_TIMEOUT), auto_decompress=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent"),
            )
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED]
        try:
            body = await request.read()
            async with self._session.request(request.method, self.base + request.target, data=body or None,
                                             headers=headers) as answer:
                content = await answer.read()
                kept = [(k, v) for k, v in answer.headers.items() if k.lower() not in _NOT_RETURNED]
                return Response(answer.status, content, answer.headers.get("Content-Type", "text/plain"), kept)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Response.text(f"probe worker cannot reach the main exporter process: {exc!r}\n", 502)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def serve_worker(config_path: str, host: str, port: int, main: tuple[str, int],
                       max_connections: int = DEFAULT_MAX_CONNECTIONS, web: WebConfigFile | None = None, *,
                       expand_env: bool = False) -> int:
    """Run one probe worker until SIGTERM/SIGINT or until its parent (the main process) is gone."""
    worker = WorkerContext(
        config_path, build_context(load_config(config_path, expand_env=expand_env), ProbeCounter(), ExporterCaches()),
        expand_env)
    forward = Forwarder(main)
    server = build_worker_server(worker, forward, max_connections, web)
    await server.start(host, port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, worker.reload)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    try:
        while not stop.is_set() and os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await server.close()
        await forward.close()
    return ExitCode.OK
