"""Scenario ``files``: 10,000 certificate files in one directory tree, watched by certloop's inventory.

Measured: wall time from process start to the first complete ``/metrics`` (``/-/ready`` answers 200
once every source finished its first sweep; the series are then counted) for the first start ever
(every file read, parsed and verified; ``first_starts`` times, the snapshot deleted before each) and a
restart (SIGTERM, start again: the ``--storage.path`` snapshot is used, one ``stat`` per file).
Interleaved with the first starts, :mod:`benchmarks.filefloor` times the least any Python exporter
does for the same files (a lower bound, not a peer), so the report says how far certloop is from what
the machine allows. Then the time of a scrape (median and max over 20 GETs), the
idle re-sweep time when nothing changed (read from ``certloop_sweep_duration_seconds{kind="files"}``
over several sweeps), and peak RSS.
There is no peer here: blackbox_exporter does not read files, and x509-certificate-exporter is not
packaged for Debian.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from benchmarks import procstat
from benchmarks.exposition import count_series, sample
from benchmarks.pki import Minter, bench_names
from benchmarks.report import Table, ms, verdict
from stack.daemons import CertloopDaemon
from stack.process import LOOPBACK, Process

SWEEP = 'certloop_sweep_duration_seconds'
LAST = 'certloop_last_sweep_timestamp_seconds'


def write_files(directory: Path, n: int, minter: Minter) -> None:
    """``n`` leaf+CA PEM files, 1,000 per subdirectory (recursive listing is part of the work)."""
    for i, name in enumerate(bench_names(n)):
        sub = directory / f"d{i // 1000:02d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{name}.pem").write_bytes(minter.leaf_pem(name, "ecdsa") + minter.ca_pem)


def _wait(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.01) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(poll)
    return time.monotonic() - started


def _scrape(host: str, port: int) -> tuple[float, int]:
    """Seconds for one ``GET /metrics`` read to its last byte, and the body size.

    A raw socket into one preallocated buffer, as a Go scraper reads: ``requests`` itself spends
    ~40 ms of Python on a 26 MB body, which would be measured as the exporter's.
    """
    buffer = bytearray(64 << 20)  # allocated (and zeroed) before the clock starts
    view, got = memoryview(buffer), 0
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        while got < len(buffer):
            n = sock.recv_into(view[got:])
            if not n:
                break
            got += n
    took = time.perf_counter() - started
    head, _, _ = bytes(buffer[: min(got, 65536)]).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"files: /metrics answered {head[:40]!r}")
    return took, got - len(head) - 4


def _floor(certs: Path, n: int) -> float:
    """Seconds from start to exit of :mod:`benchmarks.filefloor` over ``certs`` (a fresh interpreter)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "benchmarks.filefloor", str(certs)], capture_output=True,
                          text=True, timeout=120, check=False, cwd=Path(__file__).resolve().parents[1])
    took = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"files: the lower bound failed: {done.stderr[-2000:]}")
    if json.loads(done.stdout)["files"] != n:
        raise RuntimeError(f"files: the lower bound read {done.stdout.strip()}, expected {n} files")
    return took


def _stat_floor(certs: Path) -> float:
    """Seconds for the least an idle sweep that stat's every file does: list each directory and ``os.stat``
    every entry relative to it, in a tight loop in this process (median of five)."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        stack = [str(certs)]
        while stack:
            directory = stack.pop()
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for entry in os.scandir(fd):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(os.path.join(directory, entry.name))
                    else:
                        os.stat(entry.name, dir_fd=fd)
            finally:
                os.close(fd)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _spread(values: list[float]) -> str:
    """``median (min-max)`` in seconds."""
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def _idle_sweeps(session: requests.Session, url: str, process: Process, body: str,
                 count: int) -> tuple[list[float], float]:
    """The durations of ``count`` file sweeps (nothing changes), seen by polling ``/metrics`` once a
    second, and the CPU share meanwhile."""
    idle: list[float] = []
    last = sample(body, LAST, 'kind="files"')
    cpu0 = procstat.cpu_seconds(process.pid)
    window0 = time.monotonic()
    while len(idle) < count:
        text = session.get(f"{url}/metrics", timeout=30).text
        now = sample(text, LAST, 'kind="files"')
        if now != last:
            idle.append(sample(text, SWEEP, 'kind="files"') or 0.0)
            last = now
        # once a second, like a Prometheus scraping every second: each 26 MB scrape takes the loop for
        # ~10 ms, and polling faster would measure our own scrapes more than the sweeps
        time.sleep(1.0)
        if time.monotonic() - window0 > 60 + 3 * count:
            raise TimeoutError("files: idle re-sweeps did not happen")
    return idle, (procstat.cpu_seconds(process.pid) - cpu0) / (time.monotonic() - window0)


def run(workdir: Path, *, n: int, resweeps: int, say: Callable[[str], None], first_starts: int = 3) -> list[Table]:
    minter = Minter(workdir / "pki")
    certs = workdir / "certs"
    say(f"files: minting {n} certificate files")
    write_files(certs, n, minter)
    state = workdir / "certloop-files" / "state"
    daemon = CertloopDaemon.exporter(workdir / "certloop-files", {
        "global": {"interval": "24h", "files_interval": "1s", "jitter": "0s"},
        "files": [{"paths": [str(certs)], "recursive": True}],
    }, extra_args=(f"--storage.path={state}",))
    daemon.write_config()
    session = requests.Session()

    def ready() -> bool:
        try:
            return session.get(f"{daemon.url}/-/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def start() -> tuple[Process, float, str]:
        process = Process(daemon.argv(), name="certloop-exporter", log_path=daemon.workdir / "exporter.log")
        process.start()
        try:
            took = _wait(ready, 60, "/-/ready")
            return process, took, session.get(f"{daemon.url}/metrics", timeout=30).text
        except BaseException:  # not swallowed: whatever ends the wait (a failure, Ctrl-C) stops the exporter first
            process.stop()
            raise

    firsts: list[float] = []
    floors: list[float] = []
    for round_ in range(first_starts):  # alternated, so drift on a shared box falls on both
        floors.append(_floor(certs, n))
        shutil.rmtree(state, ignore_errors=True)  # a first start ever: nothing stored
        process, took, body = start()
        firsts.append(took)
        process.stop()  # SIGTERM: the snapshot is written (the last one is what the restart uses)
        say(f"files: first start {round_ + 1}/{first_starts}: {took:.3f} s, lower bound {floors[-1]:.3f} s")
    first, floor = statistics.median(firsts), statistics.median(floors)
    files_seen = count_series(body, 'certloop_probe_success{source="file"')
    first_sweep = sample(body, SWEEP, 'kind="files"') or 0.0
    process, restart, body = start()
    try:
        restarted_seen = count_series(body, 'certloop_probe_success{source="file"')
        restart_sweep = sample(body, SWEEP, 'kind="files"') or 0.0
        scrapes = []
        for _ in range(20):
            took, size = _scrape(LOOPBACK, daemon.port)
            scrapes.append(took)
        idle, idle_cpu = _idle_sweeps(session, daemon.url, process, body, resweeps)
        peak = procstat.peak_rss_mb(process.pid)
    finally:
        process.stop()
    # the same files with inotify off: every idle sweep stats every file (as every 5 minutes with it on)
    daemon.config = {**daemon.config, "global": {**daemon.config["global"], "files_watch": False}}
    daemon.write_config()
    process, _, body = start()
    try:
        full, full_cpu = _idle_sweeps(session, daemon.url, process, body, resweeps)
        stat_floor = _stat_floor(certs)  # right after, while the same files are in the same caches
    finally:
        process.stop()
    scrape_med, scrape_max = statistics.median(scrapes), max(scrapes)
    idle_med, idle_max = statistics.median(idle), max(idle)
    full_med, full_max = statistics.median(full), max(full)
    rows = (
        ("files listed in /metrics (first start, restart)", f"{files_seen}, {restarted_seen} of {n}", ""),
        (f"first start ever to first complete /metrics, median (min-max) of {first_starts} (s)", _spread(firsts),
         "< 1 s"),
        ("  lower bound: benchmarks/filefloor.py, start to exit, same rounds (s)", _spread(floors), ""),
        ("  certloop / lower bound (medians)", f"{first / floor:.2f}x", ""),
        ("  of which the first files sweep, last round (s)", f"{first_sweep:.3f}", ""),
        ("restart (snapshot) to first complete /metrics (s)", f"{restart:.3f}", "< 1 s"),
        ("  of which the first files sweep (s)", f"{restart_sweep:.3f}", ""),
        ("scrape /metrics, median / max (ms)", f"{ms(scrape_med)} / {ms(scrape_max)}", "< 100 ms"),
        ("/metrics body (MB)", f"{size / 1e6:.1f}", ""),
        ("idle re-sweep (default: inotify), median / max (ms)", f"{ms(idle_med)} / {ms(idle_max)}", "< 50 ms"),
        ("  CPU while idle (incl. our scrapes), % of a core", f"{idle_cpu * 100:.1f}", ""),
        ("idle re-sweep stat'ing every file (files_watch: false; every 5 min by default), median / max (ms)",
         f"{ms(full_med)} / {ms(full_max)}", "< 50 ms"),
        ("  CPU while idle (incl. our scrapes), % of a core", f"{full_cpu * 100:.1f}", ""),
        ("  lower bound: list and os.stat every file in a tight loop, median of 5 (ms)", ms(stat_floor), ""),
        ("peak RSS (MB)", f"{peak:.0f}", ""),
    )
    notes = (
        verdict(files_seen == n == restarted_seen, "every file is in /metrics, after a start and a restart"),
        verdict(restart < 1.0, f"restart: first complete /metrics < 1 s ({restart:.3f} s)"),
        verdict(first < 1.0,
                f"first start ever (nothing stored): first complete /metrics < 1 s (median {first:.3f} s)"),
        (f"the lower bound (read, decode, parse, one signature check, dates, names, fingerprint, rendered lines, "
         f"handed back; nothing else) takes {floor:.3f} s here: "
         + ("no Python exporter can meet the first-start target on this machine" if min(floors) >= 1.0
            else f"{1.0 - floor:.3f} s is left for everything else certloop does")),
        verdict(scrape_max < 0.1, f"a scrape < 100 ms (max {ms(scrape_max)} ms)"),
        verdict(idle_max < 0.05, f"idle re-sweep < 50 ms (max {ms(idle_max)} ms)"),
        verdict(full_max < 0.05, f"idle re-sweep stat'ing every file < 50 ms (max {ms(full_max)} ms)"),
        "idle re-sweeps in order (ms), inotify: " + ", ".join(ms(d) for d in idle)
        + "; stat'ing every file: " + ", ".join(ms(d) for d in full),
    )
    return [Table(f"{n} certificate files (certloop inventory)", ("measure", "certloop", "target"), rows, notes)]
