"""The renewer daemon: wires config, store, worker, safety net and HTTP API together, handles signals.

SIGHUP and ``POST /-/reload`` (with ``--web.enable-lifecycle``) re-read the config file; a bad file is
rejected and the running config stays (``certloop_renewer_config_last_reload_successful`` 0).
SIGTERM/SIGINT stop gracefully; a kill -9 is survivable by design (see :mod:`renewer.worker`). The
listen address and the database are read once at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from certloop.config import parse_listen_address
from certloop.errors import ConfigError
from certloop.httpserver import DEFAULT_MAX_CONNECTIONS, Handler, HttpServer
from certloop.renewer import migrations
from certloop.renewer.access import Access
from certloop.renewer.api import Api
from certloop.renewer.config import RenewerConfig, load_config
from certloop.renewer.context import RenewalContext
from certloop.renewer.csrf import Csrf
from certloop.renewer.errors import RenewerError, StoreUnavailable
from certloop.renewer.install import verify_resolver
from certloop.renewer.keystore import Keystore
from certloop.renewer.metrics import RenewerMetrics
from certloop.renewer.routes import build_router
from certloop.renewer.scheduler import SafetyNet
from certloop.renewer.served import ServedLeaves
from certloop.renewer.sharedsecret import shared_secret
from certloop.renewer.store import Store
from certloop.renewer.worker import Worker
from certloop.webconfig import WebConfigFile, guard

__all__ = ["Daemon", "open_keystore", "open_store", "tls_context", "utc_now"]

log = logging.getLogger(__name__)
SWITCH_INTERVAL = 0.001  # seconds; see Daemon.run


def utc_now() -> datetime:
    return datetime.now(UTC)


def open_keystore(cfg: RenewerConfig, *, create: bool = True) -> Keystore:
    """The configured keystore; by default ``<data_dir>/keystore.key``, created when missing."""
    ks = cfg.keystore
    if ks.key is not None or ks.key_file is not None:
        return Keystore.from_secret(ks.key, ks.key_file)
    path = cfg.data_dir / "keystore.key"
    if not path.exists() and create:
        Keystore.generate_key_file(path)
        log.warning("created a new keystore key at %s: back it up, it decrypts the stored keys", path)
    return Keystore.from_secret(None, path)


def open_store(cfg: RenewerConfig, *, migrate: bool | None = None, deadline: bool = True) -> Store:
    """Connect to the configured database; run migrations when ``database.auto_migrate`` (or ``migrate``).

    ``deadline``: store calls get ``database.timeout`` (the daemon); the CLI's long operations pass False.
    A database that cannot be reached raises :class:`StoreUnavailable` (never a driver traceback).
    """
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(cfg.database_url(), busy_timeout=cfg.database.busy_timeout,
                  timeout=cfg.database.timeout if deadline else None)
    if cfg.database.auto_migrate if migrate is None else migrate:
        try:
            store.migrate()
        except RenewerError:
            # A replica starting at the same moment may have migrated first; fine if we are at head now.
            if store.revision() != migrations.HEAD:
                store.close()
                raise
    return store


def tls_context(cfg: RenewerConfig) -> ssl.SSLContext | None:
    """HTTPS for the API when ``auth.tls_cert_file`` is set; client certificates required with ``client_ca_file``."""
    auth = cfg.auth
    if auth.tls_cert_file is None or auth.tls_key_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(auth.tls_cert_file, auth.tls_key_file)
    if auth.client_ca_file is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(auth.client_ca_file))
    return ctx


class Daemon:
    def __init__(
        self, config_path: Path, config: RenewerConfig, *, listen: str | None = None,
        clock: Callable[[], datetime] = utc_now, max_connections: int = DEFAULT_MAX_CONNECTIONS,
        web: WebConfigFile | None = None,
        expand_env: bool = False, enable_lifecycle: bool = False,
    ) -> None:
        self.max_connections = max_connections
        self.enable_lifecycle = enable_lifecycle  # --web.enable-lifecycle: POST /-/reload allowed
        self.expand_env = expand_env  # --config.expand-env: a reload reads the file the same way
        self.config_path = config_path
        self._config = config
        self.web = web
        self._access = Access.build(config.auth, web)
        self.listen = listen or config.listen
        self.clock = clock
        self.metrics = RenewerMetrics()
        self.stop_event = asyncio.Event()
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
        self.server: HttpServer | None = None

    def config(self) -> RenewerConfig:
        return self._config

    async def reload(self) -> None:
        """Re-read the config file; ConfigError leaves the running config in place."""
        try:
            new = await asyncio.to_thread(load_config, self.config_path, expand_env=self.expand_env)
            access = Access.build(new.auth, self.web)
        except ConfigError as exc:
            self.metrics.config_reload_ok.set(0)
            log.error("config reload failed, keeping the previous config: %s", exc)
            raise
        old = self._config
        self._config, self._access = new, access
        if self.web is not None:
            self.web.refresh(force=True)
        self.metrics.config_reload_ok.set(1)
        self.metrics.declare({c.id: c.issuer.type for c in new.certificates})
        if new.scheduler != old.scheduler and self.safety_net is not None:
            self.safety_net.restart()
        if new.listen != old.listen or new.database != old.database or new.data_dir != old.data_dir:
            log.warning("listen, database and data_dir changes take effect after a restart")
        log.info("config reloaded: %d certificate(s)", len(new.certificates))
        if self.safety_net is not None:
            await self.safety_net.tick()

    safety_net: SafetyNet | None = None

    async def run(self) -> None:
        # The API loop shares the GIL with the store's thread and the worker's off-loop file work. A thread
        # coming back from a GIL-free call (SQLite, a socket, fsync) waits up to the switch interval while
        # another runs Python: 5 ms by default, paid on every store hop of a webhook. 1 ms bounds that wait
        # (measured: higher webhook throughput and lower p99 at the same CPU per request).
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL))
        try:
            await self._run()
        finally:
            sys.setswitchinterval(switch)

    async def _run(self) -> None:
        cfg = self._config
        self.metrics.declare({c.id: c.issuer.type for c in cfg.certificates})
        keystore = open_keystore(cfg)  # first: a bad key file is a one-line error before any connection
        store = await asyncio.to_thread(open_store, cfg)
        store.on_connection_wait = self.metrics.connection_wait.observe
        ctx = RenewalContext(
            data_dir=cfg.data_dir, clock=self.clock, keystore=keystore,
            issuance_timeout=cfg.worker.issue_timeout.total_seconds(),
        )
        worker = Worker(store=store, config=self.config, ctx=ctx, metrics=self.metrics, owner=self.owner)
        await worker.recover_all()
        # what the verify endpoints serve now, for the status page and the read API (renewer.served)
        served = ServedLeaves(lambda: self._config.status_page, verify_resolver(ctx.dns_resolver), self.clock)
        api = Api(store=store, config=self.config, access=lambda: self._access, metrics=self.metrics,
                  clock=self.clock, wake=worker.wake, reload=self.reload, served=served,
                  lifecycle=self.enable_lifecycle)
        # the status page's CSRF key: the same in every replica on this database and after a restart
        csrf = Csrf(secrets.token_bytes(32), self.clock)
        sharing: asyncio.Task[None] | None = None
        try:
            csrf.rekey(await store.call(shared_secret, store, "csrf", self.clock()))
        except StoreUnavailable:  # the outage itself is reported by the store's callers and metrics
            log.warning("status page forms use this process's own key until the database answers")
            sharing = asyncio.create_task(self._share_csrf_key(store, csrf), name="csrf-key")
        handler: Handler = build_router(api, csrf)
        ssl_context = tls_context(cfg)
        if self.web is not None:
            handler = guard(handler, self.web, basic_auth=False)  # people's passwords resolve to roles in Access
            ssl_context = self.web.ssl_context or ssl_context
        self.server = HttpServer(handler, max_body=max(cfg.max_body * 4, 4 << 20),
                                 ssl_context=ssl_context, server_header="certloop-renewer",
                                 max_connections=self.max_connections, observer=self.metrics.http)
        host, port = parse_listen_address(self.listen)  # ":10794" means every interface
        await self.server.start(host, port)
        self.metrics.config_reload_ok.set(1)
        scheme = "https" if self.server.ssl_context else "http"
        shown = f"[{host}]" if ":" in host else host
        log.info("listening on %s://%s:%d (owner %s)", scheme, shown, self.server.port, self.owner)
        self.safety_net = SafetyNet(store, self.config, self.clock, worker.wake)
        self.safety_net.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._sighup()))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        try:
            await worker.run(self.stop_event)
        finally:
            log.info("shutting down")
            if sharing is not None:
                sharing.cancel()
            self.safety_net.stop()
            await self.server.close()
            await served.close()
            await asyncio.to_thread(store.close)

    async def _share_csrf_key(self, store: Store, csrf: Csrf) -> None:
        """Keep asking for the replicas' shared CSRF key, then switch ``csrf`` to it.

        A database that does not answer at start must not keep the renewer from serving (webhooks get
        503 and are retried, /-/ready says why): until the key is read, forms carry this process's own
        key, so they fail after a restart or on another replica ("reload the page"), never pass wrongly.
        """
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                csrf.rekey(await store.call(shared_secret, store, "csrf", self.clock()))
            except StoreUnavailable:
                delay = min(delay * 2, 30.0)
                continue
            log.info("status page forms now use the key shared by every replica")
            return

    async def _sighup(self) -> None:
        with contextlib.suppress(ConfigError):
            await self.reload()
