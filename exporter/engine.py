"""The inventory engine: one sweep loop per source, the result cache, config (re)loads, self metrics.

    engine = Engine("exporter.yml")     # raises ConfigError for a bad file
    await engine.start()                # sweeps start now, then every interval + random jitter
    engine.exposition()                 # what /metrics serves: cached text, never waits on the network
    await engine.reload()               # False (and the old config keeps running) when the new one is bad
    await engine.stop()

Each source (``SOURCES``) runs in its own task: sweep, record its duration, drop targets that
vanished, sleep ``interval + uniform(0, jitter)``. A bug in a sweep is logged and the loop goes on;
a peer's behaviour is never a bug (it is data in the target's series).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import platform
import random
import time
from collections.abc import Callable, Hashable
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from certloop import __version__
from certloop.errors import ConfigError, TrustStoreError
from certloop.exporter import metrics as m
from certloop.exporter.collector import Inventory
from certloop.exporter.config import ExporterConfig, load_config
from certloop.exporter.report import ExporterCaches
from certloop.exporter.sources import SOURCES, Context, ProbeCounter, Source
from certloop.exporter.sources.base import utcnow
from certloop.resolve import AddressCache, Resolver
from certloop.truststore import TrustStore

__all__ = ["Engine", "build_context"]

log = logging.getLogger(__name__)


def build_context(
    config: ExporterConfig, counter: ProbeCounter, caches: ExporterCaches, clock: Callable[[], datetime] = utcnow,
    state_dir: str | None = None,
) -> Context:
    """Load the trust stores and the resolver a config names; raises ConfigError naming the bad key.

    ``counter`` and ``caches`` are the process's, carried from one config to the next.
    """
    stores: dict[str | None, TrustStore] = {}
    wanted: list[tuple[str, str | None]] = [("global.ca_file", config.global_.ca_file)]
    wanted += [(f"modules.{name}.ca_file", mod.ca_file) for name, mod in config.modules.items() if mod.ca_file]
    for where, path in wanted:
        try:
            store = TrustStore.from_file(path, caches) if path else TrustStore.system(caches)
        except TrustStoreError as exc:
            raise ConfigError(where, f"cannot load trust store: {exc.message}") from exc
        stores[path] = store
        if where == "global.ca_file":
            stores[None] = store
    # A fresh AddressCache per config load: answers from the old `resolver:` must not outlive it.
    resolver = Resolver(config.global_.resolver or None, cache=AddressCache())
    return Context(config, stores, resolver, counter, caches, clock, state_dir)


class Engine:
    """Owns the current config's context, the sweep tasks and everything /metrics reports."""

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None,
        *,
        config: ExporterConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        state_dir: str | None = None,
        expand_env: bool = False,
    ) -> None:
        self.config_path = config_path
        self.expand_env = expand_env  # --config.expand-env: reloads read the file the same way
        self.state_dir = state_dir
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.inventory = Inventory()
        self.counter = ProbeCounter()
        self.caches = ExporterCaches()  # what parsing, verifying and rendering remember, for the process's life
        self.sweeps: dict[str, tuple[float, float]] = {}  # kind -> (end unix time, duration)
        self._done: set[str] = set()
        self._ready_event = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._sources: list[Source] = []
        self._process = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._process)
        GCCollector(registry=self._process)
        self.http = m.http_observer(self._process, ())  # the HTTP server's observer (exporter.server)
        if config is None:
            if config_path is None:
                raise ValueError("give a config path or a config")
            config = load_config(config_path, expand_env=expand_env)
        self.ctx = build_context(config, self.counter, self.caches, clock, state_dir)
        self.reload_ok = True
        self.reload_time = time.time()

    @property
    def config(self) -> ExporterConfig:
        return self.ctx.config

    @property
    def ready(self) -> bool:
        """True once every source finished a complete sweep (since start)."""
        return self._done >= set(SOURCES)

    async def start(self) -> None:
        self._start_loops(self.ctx)

    async def stop(self) -> None:
        await self._stop_loops()

    async def reload(self) -> tuple[bool, str]:
        """Re-read the config file. On error the running config stays and the reload metric drops to 0."""
        if self.config_path is None:
            return False, "no config file to reload"
        async with self._reload_lock:  # SIGHUP storms and concurrent POSTs apply one at a time
            return await self._reload()

    async def _reload(self) -> tuple[bool, str]:
        assert self.config_path is not None
        try:
            ctx = build_context(load_config(self.config_path, expand_env=self.expand_env), self.counter, self.caches,
                                self.clock, self.state_dir)
        except ConfigError as exc:
            self.reload_ok = False
            log.error("config reload rejected, keeping the running config: %s", exc)
            return False, str(exc)
        await self._stop_loops()
        self.ctx = ctx
        self._start_loops(ctx)
        self.reload_ok = True
        self.reload_time = time.time()
        log.info("config reloaded from %s", self.config_path)
        return True, "reloaded"

    def _start_loops(self, ctx: Context) -> None:
        for kind, make in SOURCES.items():
            source = make(ctx)
            self._sources.append(source)
            self._tasks[kind] = asyncio.create_task(self._loop(kind, source, ctx), name=f"sweep-{kind}")

    async def _stop_loops(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sources, self._sources = self._sources, []
        for source in sources:  # after its task ended: a source's state is only touched by one task
            try:
                await source.close()
            except Exception:  # a bug closing one source must not keep the others from closing
                log.exception("closing the %s source failed", source.kind)

    async def _loop(self, kind: str, source: Source, ctx: Context) -> None:
        jitter = ctx.config.global_.jitter.total_seconds()

        def put(key: Hashable, fragments: m.Fragments) -> None:
            self.inventory.put(kind, key, fragments)

        while True:
            started = time.perf_counter()
            try:
                alive = await source.sweep(put)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a source: log it, keep the last data, try again next time
                log.exception("%s sweep failed", kind)
            else:
                self.inventory.retain(kind, alive)
                self.sweeps[kind] = (time.time(), time.perf_counter() - started)
                first = kind not in self._done
                self._done.add(kind)
                if self.ready:
                    self._ready_event.set()
                if first:
                    # What the first sweep built (the inventory, per-file state) lives as long as the
                    # process: out of the cyclic collector's sight, later full collections stay short
                    # instead of walking every cached file on every idle sweep. Refcounting still frees it;
                    # garbage in cycles is collected first, or it would be frozen (leaked) with the rest.
                    # After readiness is announced: the collection takes tens of ms with a large inventory.
                    await asyncio.sleep(0)
                    gc.collect()
                    gc.freeze()
            await asyncio.sleep(source.interval + (self.rng.uniform(0, jitter) if jitter > 0 else 0))

    async def wait_ready(self) -> None:
        """Wait until :attr:`ready` (callers bound it with ``asyncio.timeout``)."""
        await self._ready_event.wait()

    # ------------------------------------------------------------------------------ exposition

    def self_metrics(self) -> str:
        """The exporter's own series (counters, sweeps, build, reload), rendered per scrape (small)."""
        fam: dict[str, list[str]] = {}
        counts = self.counter.counts
        fam[m.PROBES_TOTAL.name] = [
            m.sample(m.PROBES_TOTAL.name, "", (("source", s), ("result", r)), counts.get((s, r), 0))
            for s in ("endpoint", "file") for r in ("success", "failure")
        ]
        for kind, (end, duration) in sorted(self.sweeps.items()):
            fam.setdefault(m.LAST_SWEEP.name, []).append(m.sample(m.LAST_SWEEP.name, "", (("kind", kind),), end))
            fam.setdefault(m.SWEEP_DURATION.name, []).append(
                m.sample(m.SWEEP_DURATION.name, "", (("kind", kind),), duration))
        fam[m.BUILD_INFO.name] = [m.sample(m.BUILD_INFO.name, "", (
            ("version", __version__), ("python_version", platform.python_version())), 1)]
        fam[m.RELOAD_OK.name] = [m.sample(m.RELOAD_OK.name, "", (), 1 if self.reload_ok else 0)]
        fam[m.RELOAD_TIME.name] = [m.sample(m.RELOAD_TIME.name, "", (), self.reload_time)]
        return m.render_families(fam, m.PER_PROCESS)

    def exposition(self) -> bytes:
        """The whole /metrics body."""
        return b"".join(self.exposition_parts())

    def exposition_parts(self) -> tuple[bytes, ...]:
        """The /metrics body in pieces, the inventory's cached bytes first, never copied per scrape: joining
        a large inventory's body blocks the event loop for milliseconds (benchmarks/RESULTS.md, "HTTP
        server: compression, large bodies, the collector")."""
        return self.inventory.data(), self.self_metrics().encode(), generate_latest(self._process)
