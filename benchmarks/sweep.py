"""Scenario ``sweep``: an inventory sweep of N endpoints, certloop's own loop vs blackbox driven like Prometheus.

certloop lists the N targets in ``endpoints:`` (concurrency 64) and sweeps them itself; a sweep is
started by ``POST /-/reload`` (a reload restarts the sweep loops at once; the interval is long so
nothing else runs) and timed by ``certloop_sweep_duration_seconds{kind="endpoints"}``. blackbox has
no inventory: a Prometheus scraping N probe targets at the same concurrency is what it gets, and wrk
plays that scraper over the same N targets for the same number of seconds. Rounds alternate the order.
certloop's sweep is polled once a second through /metrics (its cost is in certloop's CPU numbers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import requests

from benchmarks import procstat
from benchmarks.exposition import sample
from benchmarks.load import LoadResult, run_wrk
from benchmarks.peers import Blackbox, daemon_pid, start_exporter, tls_module
from benchmarks.pki import Minter
from benchmarks.probe import BLACKBOX_SUCCESS, Variant, serve_targets
from benchmarks.report import Table, ms, ratio, verdict
from stack.process import LOOPBACK

SWEEP = "certloop_sweep_duration_seconds"
LAST = "certloop_last_sweep_timestamp_seconds"


def _sweep_once(url: str, session: requests.Session, timeout: float) -> float:
    """Trigger one endpoint sweep by a reload and return its duration (seconds)."""
    before = sample(session.get(f"{url}/metrics", timeout=30).text, LAST, 'kind="endpoints"')
    session.post(f"{url}/-/reload", timeout=30).raise_for_status()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        text = session.get(f"{url}/metrics", timeout=30).text
        if sample(text, LAST, 'kind="endpoints"') != before:
            return sample(text, SWEEP, 'kind="endpoints"') or 0.0
    raise TimeoutError(f"certloop sweep not finished within {timeout:g}s")


def run(workdir: Path, *, n: int, rounds: int, concurrency: int, say: Callable[[str], None]) -> list[Table]:
    minter = Minter(workdir / "pki")
    variant = Variant("ports", "ecdsa", n)
    with serve_targets(variant, workdir, minter) as (targets, _web):
        endpoints = [f"{LOOPBACK}:{port}" for port, _ in targets.endpoints]
        exporter = start_exporter(workdir / "certloop-sweep", {
            "global": {"ca_file": str(targets.ca_path), "interval": "24h", "files_interval": "24h", "jitter": "0s",
                       "concurrency": concurrency},
            "endpoints": [{"targets": endpoints, "labels": {"team": "bench"}}],
        }, timeout=max(120.0, n / 20), extra_args=("--web.enable-lifecycle",))  # each round starts with a reload
        box = Blackbox.start(workdir / "blackbox-sweep", {"tls_connect": tls_module()})
        box_paths = [f"/probe?target={e}&module=tls_connect" for e in endpoints]
        session = requests.Session()
        mine_pid, box_pid = daemon_pid(exporter), box.process.pid
        durations: list[float] = []
        mine_cpu = box_cpu = 0.0
        loads: list[LoadResult] = []
        try:
            for r in range(rounds):
                for side in (["certloop", "blackbox"] if r % 2 == 0 else ["blackbox", "certloop"]):
                    if side == "certloop":
                        cpu0 = procstat.cpu_seconds(mine_pid)
                        durations.append(_sweep_once(exporter.url, session, timeout=max(120.0, n / 10)))
                        mine_cpu += procstat.cpu_seconds(mine_pid) - cpu0
                        say(f"  sweep round {r + 1} certloop: {n / durations[-1]:.0f} probes/s")
                    else:
                        seconds = max(3, round(durations[-1])) if durations else max(3, n // 500)
                        cpu0 = procstat.cpu_seconds(box_pid)
                        loads.append(run_wrk(box.url, box_paths, seconds=seconds, workdir=workdir,
                                             connections=concurrency, success=BLACKBOX_SUCCESS))
                        box_cpu += procstat.cpu_seconds(box_pid) - cpu0
                        say(f"  sweep round {r + 1} blackbox: {loads[-1].rate:.0f} probes/s")
            peaks = procstat.peak_rss_mb(mine_pid), procstat.peak_rss_mb(box_pid)
        finally:
            box.stop()
            exporter.stop()
    mine_rate = n * len(durations) / sum(durations)
    box_probes = sum(x.requests for x in loads)
    box_rate = box_probes / sum(x.seconds for x in loads)
    mine_ms, box_ms = mine_cpu / (n * len(durations)), box_cpu / box_probes
    failed = sum(x.failures + x.socket_errors for x in loads)
    rows = (
        ("certloop (inventory sweep)", f"{n * len(durations)}", f"{mine_rate:.0f}", ms(mine_ms), f"{peaks[0]:.0f}", ""),
        ("blackbox (driven by wrk)", f"{box_probes}", f"{box_rate:.0f}", ms(box_ms), f"{peaks[1]:.0f}", str(failed)),
        ("certloop/blackbox", "", ratio(mine_rate, box_rate), ratio(mine_ms, box_ms), ratio(*peaks), ""),
    )
    notes = (
        verdict(mine_rate >= 1.3 * box_rate, f"sweep probes/s >= 1.3x blackbox ({ratio(mine_rate, box_rate)})"),
        verdict(peaks[0] < 150, f"certloop peak RSS < 150 MB ({peaks[0]:.0f} MB)"),
        f"certloop sweep durations (s): {', '.join(f'{d:.2f}' for d in durations)}",
    )
    return [Table(f"inventory sweep of {n} endpoints (ports, ECDSA), concurrency {concurrency}",
                  ("exporter", "probes", "probes/s", "exporter CPU ms/probe", "peak RSS MB", "failed"), rows, notes)]
