"""``certloop exporter``: Prometheus-style flags, uvloop when available, SIGHUP reload.

    certloop exporter --config.file exporter.yml --web.listen-address 127.0.0.1:10793
    certloop exporter --config.file exporter.yml --config.check    # validate and exit (0 ok, 78 bad)
    certloop exporter --config.file exporter.yml --web.probe-workers 2   # /probe on 3 processes
    certloop exporter --config.file exporter.yml --web.max-connections 4096

Exit codes are certloop's (:mod:`certloop.exitcodes`, docs/exit-codes.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from certloop import __version__, logs
from certloop.config import parse_listen_address
from certloop.errors import CertloopError, ConfigError, ListenError
from certloop.exitcodes import ExitCode, UsageParser
from certloop.exporter.config import ExporterConfig, load_config, split_target
from certloop.exporter.engine import Engine, build_context
from certloop.exporter.report import ExporterCaches
from certloop.exporter.server import ProbeWorkers, build_server, serve_worker
from certloop.exporter.sources import ProbeCounter
from certloop.httpserver import DEFAULT_MAX_CONNECTIONS, HttpServer, tune_collector
from certloop.webconfig import WebConfigFile

__all__ = ["main"]

log = logging.getLogger("exporter")
DEFAULT_LISTEN = "127.0.0.1:10793"
LOOPBACK = "127.0.0.1"


def _parser() -> argparse.ArgumentParser:
    p = UsageParser(prog="certloop exporter", description="Observe TLS endpoints and certificate files.")
    p.add_argument("--config.file", dest="config_file", required=True, help="YAML config file")
    p.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                   help=f"host:port to serve on (default {DEFAULT_LISTEN}; port 0 picks a free one)")
    p.add_argument("--config.check", dest="check", action="store_true", help="validate the config and exit")
    p.add_argument("--config.expand-env", dest="expand_env", action="store_true",
                   help="expand ${VAR} and ${VAR:-default} in every string of the config file ($$ writes a $)")
    logs.add_flags(p)
    p.add_argument("--version", action="version", version=f"certloop exporter {__version__}")
    p.add_argument("--web.max-connections", dest="max_connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                   metavar="N", help="open HTTP connections allowed per process; beyond it the oldest idle one "
                   "is closed, and only when all are busy is a new one refused with 503 "
                   f"(default {DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--web.config.file", dest="web_config", metavar="FILE",
                   help="TLS and basic authentication for the listener, in exporter-toolkit's format "
                        "(see docs/exporter.md); re-read when it changes")
    p.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                   help="answer POST/PUT /-/reload (off by default, as in Prometheus; SIGHUP always reloads)")
    p.add_argument("--web.probe-workers", dest="probe_workers", type=int, default=0, metavar="N",
                   help="extra processes answering /probe on the same address (SO_REUSEPORT; default 0)")
    p.add_argument("--storage.path", dest="storage", metavar="DIR",
                   help="directory for what survives a restart (the file inventory's snapshot); "
                        "default: none, every file is read again after a restart")
    p.add_argument("--web.probe-worker-of", dest="worker_of", help=argparse.SUPPRESS)  # internal: run as a worker
    return p


def main(argv: Sequence[str]) -> int:
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:  # --help, --version, or a usage error (UsageParser)
        return ExitCode.OK if exc.code == 0 else ExitCode.USAGE
    logs.configure(args.log_level, args.log_format)
    try:
        config = load_config(args.config_file, expand_env=args.expand_env)
        if args.check:
            build_context(config, ProbeCounter(), ExporterCaches())
            print(f"{args.config_file}: OK ({len(config.endpoints)} endpoint groups, {len(config.files)} file groups)")
    except ConfigError as exc:
        print(f"certloop exporter: invalid config: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as exc:
        print(f"certloop exporter: --web.listen-address: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    web: WebConfigFile | None = None
    if args.web_config:
        try:
            web = WebConfigFile(Path(args.web_config))
        except ConfigError as exc:
            print(f"certloop exporter: --web.config.file: {exc}", file=sys.stderr)
            return ExitCode.CONFIG
    if args.check:
        return ExitCode.OK
    tune_collector()
    runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    try:
        # the handshake-heavy hot path is cheaper on uvloop (benchmarks/RESULTS.md, "TLS fetch: observing the
        # chain instead of a full handshake")
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        pass
    if args.probe_workers < 0:
        print("certloop exporter: --web.probe-workers must be 0 or more", file=sys.stderr)
        return ExitCode.USAGE
    if args.max_connections < 1:
        print("certloop exporter: --web.max-connections must be 1 or more", file=sys.stderr)
        return ExitCode.USAGE
    if args.storage and not args.worker_of:
        problem = _storage_problem(args.storage)
        if problem:
            print(f"certloop exporter: --storage.path {args.storage}: {problem}", file=sys.stderr)
            return ExitCode.USAGE
    try:
        if args.worker_of:
            return int(runner(serve_worker(args.config_file, host, port, split_target(args.worker_of),
                                           args.max_connections, web, expand_env=args.expand_env)))
        return int(runner(_serve(args.config_file, config, host, port, args.probe_workers, args.storage,
                                 args.max_connections, web, args.web_config, expand_env=args.expand_env,
                                 enable_lifecycle=args.enable_lifecycle)))
    except ConfigError as exc:
        print(f"certloop exporter: invalid config: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except ListenError as exc:
        print(f"certloop exporter: cannot listen on {args.listen}: {exc.detail}", file=sys.stderr)
        return ExitCode.CANNOT_LISTEN
    except (CertloopError, OSError) as exc:
        print(f"certloop exporter: {exc}", file=sys.stderr)
        return ExitCode.FAILURE


def _storage_problem(path: str) -> str | None:
    """Why ``path`` cannot hold the exporter's state (created 0700 when missing), or None."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        return f"cannot create it ({exc.strerror or exc})"
    if not os.path.isdir(path):
        return "not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return "not writable by this user"
    return None


async def _serve(
    config_path: str, config: ExporterConfig, host: str, port: int, probe_workers: int = 0,
    storage: str | None = None, max_connections: int = DEFAULT_MAX_CONNECTIONS, web: WebConfigFile | None = None,
    web_config_path: str | None = None, *, expand_env: bool = False, enable_lifecycle: bool = False,
) -> int:
    engine = Engine(config_path, config=config, state_dir=storage, expand_env=expand_env)
    workers: ProbeWorkers | None = None
    server = build_server(engine, on_reload=lambda: workers.reload() if workers else None,
                          enable_lifecycle=enable_lifecycle,
                          reuse_port=probe_workers > 0, max_connections=max_connections, web=web)
    await server.start(host, port)
    private: HttpServer | None = None
    supervisor: asyncio.Task[None] | None = None
    if probe_workers > 0:  # workers forward everything but /probe here
        private = build_server(engine, on_reload=lambda: workers.reload() if workers else None,
                               enable_lifecycle=enable_lifecycle)
        await private.start(LOOPBACK, 0)
        workers = ProbeWorkers(probe_workers, config_path, (host, server.port), (LOOPBACK, private.port),
                               max_connections, web_config_path, expand_env=expand_env)
        workers.start()
        supervisor = asyncio.create_task(workers.supervise(), name="probe-workers")
    await engine.start()
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if web is not None and web.ssl_context is not None else "http"
    log.info("listening on %s://%s:%d/metrics (pid %d)", scheme, shown, server.port, os.getpid())
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[None]] = set()

    async def reload_all() -> None:
        if web is not None:
            web.refresh(force=True)
        ok, _ = await engine.reload()
        if ok and workers is not None:
            workers.reload()

    def on_hup() -> None:
        task = asyncio.create_task(reload_all())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await server.close()
        if supervisor is not None:  # before stopping the workers: their exits are not deaths to repair
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        if workers is not None:
            workers.stop()
        if private is not None:
            await private.close()
        await engine.stop()
    log.info("stopped")
    return ExitCode.OK
