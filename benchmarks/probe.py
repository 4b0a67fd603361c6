"""Scenario ``probe``: certloop's ``/probe`` against blackbox_exporter's, same targets, same load.

For each variant (targets on N separate ports, or N SNI names on one port; ECDSA or RSA leaves)
nginx serves the targets, both exporters run side by side, and wrk drives each one in turn with the
same duration at the same concurrency: B/A after A/B, round after round, so drift on the shared
box (other work, thermal, page cache) falls on both. Per exporter: probes/s, latency p50/p99 (median
over rounds), exporter CPU ms per probe (utime+stime deltas from /proc), peak RSS (VmHWM), and the
CPU the load generator and nginx spent, since all of them share the cores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from benchmarks import procstat
from benchmarks.load import LoadResult, run_wrk
from benchmarks.peers import BenchNginx, Blackbox, daemon_pid, start_exporter, tls_module
from benchmarks.pki import KeyKind, Minter, bench_names
from benchmarks.report import Table, median, ms, ratio, verdict
from stack.process import LOOPBACK, free_port

Layout = Literal["ports", "sni"]
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


@dataclass
class Tally:
    """One exporter's rounds, summed."""

    name: str
    pid: int
    loads: list[LoadResult] = field(default_factory=list)
    cpu: float = 0.0
    server_cpu: float = 0.0

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
def serve_targets(variant: Variant, workdir: Path, minter: Minter) -> Iterator[tuple[Targets, BenchNginx]]:
    """nginx serving the variant's N targets (started, and stopped on exit)."""
    web = BenchNginx(workdir / f"nginx-{variant.layout}-{variant.key}-{variant.n}", targets=variant.n)
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
        yield Targets(endpoints, minter.ca_path), web
    finally:
        web.stop()


def certloop_paths(targets: Targets) -> list[str]:
    return [f"/probe?target={LOOPBACK}:{port}" + (f"&server_name={name}" if name else "")
            for port, name in targets.endpoints]


def blackbox_setup(targets: Targets) -> tuple[dict[str, object], list[str]]:
    """blackbox modules and request paths: SNI names need one module each (tls_config.server_name)."""
    modules: dict[str, object] = {"tls_connect": tls_module()}
    paths = []
    for i, (port, name) in enumerate(targets.endpoints):
        module = "tls_connect"
        if name is not None:
            module = f"sni{i}"
            modules[module] = tls_module(name)
        paths.append(f"/probe?target={LOOPBACK}:{port}&module={module}")
    return modules, paths


def run_variant(
    variant: Variant, workdir: Path, minter: Minter, *, rounds: int, per_round: int, concurrency: int,
    say: Callable[[str], None],
) -> Table:
    """Both exporters against one nginx, interleaved A/B then B/A for ``rounds`` rounds."""
    with serve_targets(variant, workdir, minter) as (targets, web):
        exporter = start_exporter(workdir / "certloop-probe", {
            "global": {"ca_file": str(targets.ca_path), "interval": "24h", "files_interval": "24h", "jitter": "0s"},
        })
        modules, box_paths = blackbox_setup(targets)
        box = Blackbox.start(workdir / "blackbox-probe", modules)
        try:
            mine = Tally("certloop", daemon_pid(exporter))
            sides = {
                "certloop": (exporter.url, certloop_paths(targets), CERTLOOP_SUCCESS, mine),
                "blackbox": (box.url, box_paths, BLACKBOX_SUCCESS, Tally("blackbox", box.process.pid)),
            }
            for url, paths, success, _ in sides.values():  # warm-up: connection pools, code paths, caches
                run_wrk(url, paths, seconds=1, workdir=workdir, connections=concurrency,
                        success=success)
            for r in range(rounds):
                order = ["certloop", "blackbox"] if r % 2 == 0 else ["blackbox", "certloop"]
                for side in order:
                    url, paths, success, tally = sides[side]
                    cpu0, web0 = procstat.cpu_seconds(tally.pid), procstat.cpu_seconds(web.master_pid)
                    load = run_wrk(url, paths, seconds=per_round, workdir=workdir, connections=concurrency,
                                   success=success)
                    tally.cpu += procstat.cpu_seconds(tally.pid) - cpu0
                    tally.server_cpu += procstat.cpu_seconds(web.master_pid) - web0
                    tally.loads.append(load)
                    say(f"  {variant.label} round {r + 1} {side}: {load.rate:.0f} probes/s, p99 {ms(load.p99)} ms, "
                        f"failures {load.failures + load.socket_errors}")
            peaks = {name: procstat.peak_rss_mb(side[3].pid) for name, side in sides.items()}
        finally:
            box.stop()
            exporter.stop()
    a, b = sides["certloop"][3], sides["blackbox"][3]
    return _table(variant, a, b, peaks, concurrency)


def _row(t: Tally, peak: float) -> tuple[str, ...]:
    loads = t.loads
    fails = sum(r.failures + r.socket_errors for r in loads)
    client = sum(r.client_cpu for r in loads)
    return (t.name, f"{t.requests}", f"{t.rate:.0f}", ms(median([r.p50 for r in loads])),
            ms(median([r.p99 for r in loads])), ms(t.per_probe(t.cpu)), f"{peak:.0f}",
            ms(t.per_probe(client)), ms(t.per_probe(t.server_cpu)), str(fails))


def _table(variant: Variant, a: Tally, b: Tally, peaks: dict[str, float], concurrency: int) -> Table:
    cpu_a, cpu_b = a.per_probe(a.cpu), b.per_probe(b.cpu)
    rows = (
        _row(a, peaks["certloop"]),
        _row(b, peaks["blackbox"]),
        ("certloop/blackbox", "", ratio(a.rate, b.rate), "", "", ratio(cpu_a, cpu_b),
         ratio(peaks["certloop"], peaks["blackbox"]), "", "", ""),
    )
    notes = (
        verdict(a.rate >= 1.5 * b.rate, f"probes/s >= 1.5x blackbox ({ratio(a.rate, b.rate)})"),
        verdict(cpu_a < 0.0005, f"exporter CPU per probe below 0.5 ms ({ms(cpu_a)} ms; blackbox {ms(cpu_b)} ms)"),
    )
    return Table(
        f"/probe, {variant.label}, concurrency {concurrency}",
        ("exporter", "probes", "probes/s", "p50 ms", "p99 ms", "exporter CPU ms/probe", "peak RSS MB",
         "wrk CPU ms/probe", "nginx CPU ms/probe", "failed"),
        rows, notes,
    )


def variants(ns: list[int], layouts: list[Layout], keys: list[KeyKind]) -> list[Variant]:
    return [Variant(layout, key, n) for n in ns for layout in layouts for key in keys]


def run(workdir: Path, *, ns: list[int], keys: list[KeyKind], rounds: int, seconds: int,
        concurrency: int, say: Callable[[str], None]) -> list[Table]:
    minter = Minter(workdir / "pki")
    tables = []
    for variant in variants(ns, ["ports", "sni"], keys):
        say(f"probe: {variant.label}")
        table = run_variant(variant, workdir, minter, rounds=rounds, per_round=seconds, concurrency=concurrency,
                            say=say)
        tables.append(table)
    return tables
