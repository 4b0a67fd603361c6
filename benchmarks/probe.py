"""Scenario ``probe``: certloop's ``/probe`` against blackbox_exporter's, same targets, same load.

For each variant (targets on N separate ports, or N SNI names on one port; ECDSA or RSA leaves)
nginx serves the targets, both exporters run side by side, and wrk drives each one in turn with the
same duration at the same concurrency: B/A after A/B, round after round, so drift on the shared
box (other work, thermal, page cache) falls on both. Per exporter: probes/s, latency p50/p99 (median
over rounds), exporter CPU ms per probe (utime+stime deltas from /proc), peak RSS (VmHWM), and the
CPU the load generator and nginx spent, since all of them share the cores.

Layouts ``ports`` and ``sni`` give both exporters IP literals (``sni``: plus a server name). The
name layouts give them what users give, names (``/probe?target=site00042.bench:PORT``), which both
must resolve, in a private mount namespace the benchmark creates, both exporters inside it:

- ``hosts``: the N names in a hosts file bind-mounted over /etc/hosts (the system resolver's path);
- ``dns``: the N names served by dnsmasq on port 53 of a spare loopback address with TTL
  ``DNS_TTL``; certloop is given it by ``resolver:``, blackbox (which has no resolver setting for
  its tcp prober) by a resolv.conf bind-mounted over /etc/resolv.conf. dnsmasq's CPU is reported
  per side.

Name variants start both exporters fresh and skip the warm-up, so the first lookup of every name
is counted (at N = 5,000 most names are probed only a few times in a run).

nginx itself is warmed before either exporter runs (:func:`warm_server`: every target handshaken
``SERVER_WARM_PASSES`` times by Python's ``ssl``, a client that is neither side). An nginx worker
does set-up work on its first handshake with a server block's key; without the warm pass that
one-time cost fell on the first rounds, most of it on the side that probed first, though it is the
server's, not either exporter's. The per-round figures:
benchmarks/RESULTS.md, "Issue 11 guard on the fourth 2026-12-07 session's machine".
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmarks import procstat
from benchmarks.load import LoadResult, run_wrk
from benchmarks.peers import BenchNginx, Blackbox, MountNamespace, daemon_pid, start_exporter, tls_module
from benchmarks.pki import KeyKind, Minter, bench_names
from benchmarks.report import Table, median, ms, ratio, verdict
from stack.dnsmasq import Dnsmasq
from stack.process import LOOPBACK, free_port

Layout = Literal["ports", "sni", "hosts", "dns"]
LAYOUTS: tuple[Layout, ...] = ("ports", "sni", "hosts", "dns")
NAME_LAYOUTS = ("hosts", "dns")
DNS_TTL = 300  # seconds: a common TTL for a web name; longer than a benchmark run, as in production
SERVER_WARM_PASSES = 3  # handshakes per target before measuring, so each nginx worker most likely sees every key
GOALS = {"ports": 1.5, "sni": 1.5, "hosts": 1.3, "dns": 1.3}  # probes/s, certloop/blackbox (issue 11: 1 and 1b)
CERTLOOP_SUCCESS = "certloop_probe_success{[^\n]*} 1\n"
BLACKBOX_SUCCESS = "\nprobe_success 1\n"


@dataclass(frozen=True)
class Variant:
    layout: Layout
    key: KeyKind
    n: int

    @property
    def label(self) -> str:
        return f"N={self.n} {self.layout} {self.key}"


@dataclass(frozen=True)
class Targets:
    """What nginx serves: (port, server name or None) per target."""

    endpoints: tuple[tuple[int, str | None], ...]
    ca_path: Path


@dataclass(frozen=True)
class NameService:
    """How the exporters of a name variant are started and told to resolve."""

    prefix: tuple[str, ...] = ()  # command prefix entering the mount namespace
    resolver: tuple[str, ...] = ()  # certloop's `resolver:`
    dns_pid: int | None = None  # dnsmasq, whose CPU is counted per side


@dataclass
class Tally:
    """One exporter's rounds, summed."""

    name: str
    pid: int
    loads: list[LoadResult] = field(default_factory=list)
    cpu: float = 0.0
    server_cpu: float = 0.0
    dns_cpu: float = 0.0

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.loads)

    @property
    def rate(self) -> float:
        seconds = sum(r.seconds for r in self.loads)
        return self.requests / seconds if seconds else 0.0

    def per_probe(self, seconds: float) -> float:
        return seconds / self.requests if self.requests else 0.0


def _unique_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


@contextlib.contextmanager
def serve_targets(
    variant: Variant, workdir: Path, minter: Minter, warm_passes: int = SERVER_WARM_PASSES
) -> Iterator[tuple[Targets, BenchNginx]]:
    """nginx serving the variant's N targets (started, warmed by :func:`warm_server`, and stopped on exit)."""
    web = BenchNginx(workdir / f"nginx-{variant.layout}-{variant.key}-{variant.n}", targets=variant.n)
    # ports: one leaf on N ports; every other layout: N names with a leaf each on one port
    names = bench_names(variant.n)
    if variant.layout == "ports":
        issued = minter.issue(names[0], variant.key)
        ports = _unique_ports(variant.n)
        web.add_site([issued.name], issued.chain_path, issued.key_path, [(LOOPBACK, p) for p in ports], default=True)
        endpoints: tuple[tuple[int, str | None], ...] = tuple((p, None) for p in ports)
    else:
        port = free_port()
        for i, leaf in enumerate(minter.issue_many(names, variant.key)):
            web.add_site([leaf.name], leaf.chain_path, leaf.key_path, [(LOOPBACK, port)], default=i == 0)
        endpoints = tuple((port, name) for name in names)
    web.start(timeout=120)
    try:
        targets = Targets(endpoints, minter.ca_path)
        if warm_passes:
            warm_server(targets, warm_passes)
        yield targets, web
    finally:
        web.stop()


def warm_server(targets: Targets, passes: int = SERVER_WARM_PASSES, threads: int = 8) -> int:
    """Handshake every target ``passes`` times (no verification, SNI as given); the handshakes done.

    Which nginx worker accepts a connection is the kernel's choice, so a key reaches both workers
    only with some probability: several passes make a worker that never saw a key rare enough that a
    first round costs nginx about what a later one does (the same RESULTS.md section measures it).
    Raises RuntimeError naming the first target that does not complete a handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def handshake(endpoint: tuple[int, str | None]) -> None:
        port, name = endpoint
        try:
            with socket.create_connection((LOOPBACK, port), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname=name):
                pass
        except OSError as exc:
            raise RuntimeError(f"warming nginx: {LOOPBACK}:{port} (server name {name}): {exc}") from exc

    work = list(targets.endpoints) * passes
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(handshake, work):
            pass
    return len(work)


@contextlib.contextmanager
def name_service(variant: Variant, targets: Targets, workdir: Path) -> Iterator[NameService]:
    """Nothing for IP layouts; for name layouts the mount namespace (and dnsmasq) both exporters use."""
    if variant.layout not in NAME_LAYOUTS:
        yield NameService()
        return
    where = workdir / f"names-{variant.layout}-{variant.key}-{variant.n}"
    where.mkdir(parents=True, exist_ok=True)
    names = [name for _, name in targets.endpoints if name is not None]
    namespace = MountNamespace.create(where)
    dns: Dnsmasq | None = None
    try:
        if variant.layout == "hosts":
            hosts = where / "hosts"
            hosts.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
                             + "".join(f"{LOOPBACK} {name}\n" for name in names))
            namespace.bind(hosts, "/etc/hosts")
            yield NameService(tuple(namespace.prefix))
        else:
            listen = _spare_loopback()
            dns = Dnsmasq(where / "dnsmasq", {name: (LOOPBACK,) for name in names}, listen=listen, port=53, ttl=DNS_TTL)
            dns.start()
            resolv = where / "resolv.conf"
            resolv.write_text(f"nameserver {listen}\n")
            namespace.bind(resolv, "/etc/resolv.conf")
            assert dns.process is not None
            yield NameService(tuple(namespace.prefix), (f"{listen}:53",), dns.process.pid)
    finally:
        if dns is not None:
            dns.stop()
        namespace.stop()


def _spare_loopback() -> str:
    """A 127/8 address whose port 53 is free (resolv.conf has no port), chosen at random."""
    rng = random.Random()
    for _ in range(50):
        address = f"127.{rng.randrange(1, 250)}.{rng.randrange(1, 250)}.{rng.randrange(2, 250)}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, 53))
            except OSError:
                continue
        return address
    raise RuntimeError("no loopback address with a free port 53")


def certloop_paths(variant: Variant, targets: Targets) -> list[str]:
    if variant.layout in NAME_LAYOUTS:
        return [f"/probe?target={name}:{port}" for port, name in targets.endpoints]
    return [f"/probe?target={LOOPBACK}:{port}" + (f"&server_name={name}" if name else "")
            for port, name in targets.endpoints]


def blackbox_setup(variant: Variant, targets: Targets) -> tuple[dict[str, object], list[str]]:
    """blackbox modules and request paths: SNI names on an IP target need one module each
    (tls_config.server_name); a name target is its own server name, so one module serves all."""
    modules: dict[str, object] = {"tls_connect": tls_module()}
    paths = []
    for i, (port, name) in enumerate(targets.endpoints):
        if variant.layout in NAME_LAYOUTS:
            paths.append(f"/probe?target={name}:{port}&module=tls_connect")
            continue
        module = "tls_connect"
        if name is not None:
            module = f"sni{i}"
            modules[module] = tls_module(name)
        paths.append(f"/probe?target={LOOPBACK}:{port}&module={module}")
    return modules, paths


def run_variant(
    variant: Variant, workdir: Path, minter: Minter, *, rounds: int, per_round: int, concurrency: int,
    say: Callable[[str], None], probe_workers: int = 0, server_warm_passes: int = SERVER_WARM_PASSES,
) -> Table:
    """Both exporters against one nginx, interleaved A/B then B/A for ``rounds`` rounds."""
    with serve_targets(variant, workdir, minter, server_warm_passes) as (targets, web), \
            name_service(variant, targets, workdir) as names:
        settings: dict[str, object] = {"ca_file": str(targets.ca_path), "interval": "24h", "files_interval": "24h",
                                       "jitter": "0s"}
        if names.resolver:
            settings["resolver"] = list(names.resolver)
        workers = ("--web.probe-workers", str(probe_workers)) if probe_workers else ()
        exporter = start_exporter(workdir / f"certloop-probe-{variant.layout}", {"global": settings},
                                  prefix=names.prefix, extra_args=workers)
        modules, box_paths = blackbox_setup(variant, targets)
        box = Blackbox.start(workdir / f"blackbox-probe-{variant.layout}", modules, prefix=names.prefix)
        try:
            mine = Tally("certloop", daemon_pid(exporter))
            sides = {
                "certloop": (exporter.url, certloop_paths(variant, targets), CERTLOOP_SUCCESS, mine),
                "blackbox": (box.url, box_paths, BLACKBOX_SUCCESS, Tally("blackbox", box.process.pid)),
            }
            if variant.layout not in NAME_LAYOUTS:  # name variants count every first lookup
                for url, paths, success, _ in sides.values():  # warm-up: connection pools, code paths, caches
                    run_wrk(url, paths, seconds=1, workdir=workdir, connections=concurrency,
                            success=success)
            for r in range(rounds):
                order = ["certloop", "blackbox"] if r % 2 == 0 else ["blackbox", "certloop"]
                for side in order:
                    url, paths, success, tally = sides[side]
                    cpu0, web0 = procstat.cpu_seconds(tally.pid), procstat.cpu_seconds(web.master_pid)
                    dns0 = procstat.cpu_seconds(names.dns_pid) if names.dns_pid else 0.0
                    load = run_wrk(url, paths, seconds=per_round, workdir=workdir, connections=concurrency,
                                   success=success)
                    cpu = procstat.cpu_seconds(tally.pid) - cpu0
                    server = procstat.cpu_seconds(web.master_pid) - web0
                    tally.cpu += cpu
                    tally.server_cpu += server
                    if names.dns_pid:
                        tally.dns_cpu += procstat.cpu_seconds(names.dns_pid) - dns0
                    tally.loads.append(load)
                    per = 1000 / load.requests if load.requests else 0.0
                    say(f"  {variant.label} round {r + 1} {side}: {load.rate:.0f} probes/s, p99 {ms(load.p99)} ms, "
                        f"exporter {cpu * per:.3f} and nginx {server * per:.3f} ms CPU per probe, "
                        f"failures {load.failures + load.socket_errors}")
            peaks = {name: procstat.family_peak_rss_mb(side[3].pid) for name, side in sides.items()}
        finally:
            box.stop()
            exporter.stop()
    a, b = sides["certloop"][3], sides["blackbox"][3]
    return _table(variant, a, b, peaks, concurrency, dns=names.dns_pid is not None)


def _row(t: Tally, peak: float) -> tuple[str, ...]:
    loads = t.loads
    fails = sum(r.failures + r.socket_errors for r in loads)
    client = sum(r.client_cpu for r in loads)
    return (t.name, f"{t.requests}", f"{t.rate:.0f}", ms(median([r.p50 for r in loads])),
            ms(median([r.p99 for r in loads])), ms(t.per_probe(t.cpu)), f"{peak:.0f}",
            ms(t.per_probe(client)), ms(t.per_probe(t.server_cpu)), str(fails))


def _table(variant: Variant, a: Tally, b: Tally, peaks: dict[str, float], concurrency: int, *,
           dns: bool = False) -> Table:
    cpu_a, cpu_b = a.per_probe(a.cpu), b.per_probe(b.cpu)
    rows = (
        _row(a, peaks["certloop"]),
        _row(b, peaks["blackbox"]),
        ("certloop/blackbox", "", ratio(a.rate, b.rate), "", "", ratio(cpu_a, cpu_b),
         ratio(peaks["certloop"], peaks["blackbox"]), "", "", ""),
    )
    goal = GOALS[variant.layout]
    notes: tuple[str, ...] = (
        verdict(a.rate >= goal * b.rate, f"probes/s >= {goal}x blackbox ({ratio(a.rate, b.rate)})"),
        verdict(cpu_a < 0.0005, f"exporter CPU per probe below 0.5 ms ({ms(cpu_a)} ms; blackbox {ms(cpu_b)} ms)")
        if variant.layout not in NAME_LAYOUTS else
        verdict(cpu_a < cpu_b, f"exporter CPU per probe below blackbox's ({ms(cpu_a)} vs {ms(cpu_b)} ms)"),
    )
    seconds_a, seconds_b = sum(r.seconds for r in a.loads), sum(r.seconds for r in b.loads)
    notes += (f"cores the exporter got while loaded (CPU s / wall s): certloop {a.cpu / seconds_a:.2f}, "
              f"blackbox {b.cpu / seconds_b:.2f}" if seconds_a and seconds_b else "no load ran",)
    if dns:
        notes += (f"dnsmasq CPU ms per probe while loaded by: certloop {ms(a.per_probe(a.dns_cpu))}, "
                  f"blackbox {ms(b.per_probe(b.dns_cpu))} (TTL {DNS_TTL} s)",)
    return Table(
        f"/probe, {variant.label}, concurrency {concurrency}",
        ("exporter", "probes", "probes/s", "p50 ms", "p99 ms", "exporter CPU ms/probe", "peak RSS MB",
         "wrk CPU ms/probe", "nginx CPU ms/probe", "failed"),
        rows, notes,
    )


def variants(ns: list[int], layouts: Sequence[Layout], keys: list[KeyKind]) -> list[Variant]:
    return [Variant(layout, key, n) for n in ns for layout in layouts for key in keys]


def run(workdir: Path, *, ns: list[int], keys: list[KeyKind], rounds: int, seconds: int,
        concurrency: int, say: Callable[[str], None], layouts: Sequence[Layout] = LAYOUTS,
        probe_workers: int = 0, server_warm_passes: int = SERVER_WARM_PASSES) -> list[Table]:
    minter = Minter(workdir / "pki")
    tables = []
    for variant in variants(ns, layouts, keys):
        say(f"probe: {variant.label}")
        table = run_variant(variant, workdir, minter, rounds=rounds, per_round=seconds, concurrency=concurrency,
                            say=say, probe_workers=probe_workers, server_warm_passes=server_warm_passes)
        tables.append(table)
    return tables
