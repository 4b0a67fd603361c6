"""Scenario ``files``: 10,000 certificate files in one directory tree, watched by certloop's inventory.

Measured: wall time from process start to the first complete ``/metrics`` (``/-/ready`` answers 200
once every source finished its first sweep; the series are then counted), twice: the first start ever
(every file read, parsed and verified) and a restart (SIGTERM, start again: the ``--storage.path``
snapshot is used, one ``stat`` per file). Then the time of a scrape (median and max over 20 GETs), the
idle re-sweep time when nothing changed (read from ``certloop_sweep_duration_seconds{kind="files"}``
over several sweeps), and peak RSS.
There is no peer here: blackbox_exporter does not read files, and x509-certificate-exporter is not
packaged for Debian.
"""

from __future__ import annotations

import socket
import statistics
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


def run(workdir: Path, *, n: int, resweeps: int, say: Callable[[str], None]) -> list[Table]:
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
        except BaseException:
            process.stop()
            raise

    process, first, body = start()
    process.stop()  # SIGTERM: the snapshot is written
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
    finally:
        process.stop()
    scrape_med, scrape_max = statistics.median(scrapes), max(scrapes)
    idle_med, idle_max = statistics.median(idle), max(idle)
    full_med, full_max = statistics.median(full), max(full)
    rows = (
        ("files listed in /metrics (first start, restart)", f"{files_seen}, {restarted_seen} of {n}", ""),
        ("first start ever to first complete /metrics (s)", f"{first:.3f}", "< 1 s"),
        ("  of which the first files sweep (s)", f"{first_sweep:.3f}", ""),
        ("restart (snapshot) to first complete /metrics (s)", f"{restart:.3f}", "< 1 s"),
        ("  of which the first files sweep (s)", f"{restart_sweep:.3f}", ""),
        ("scrape /metrics, median / max (ms)", f"{ms(scrape_med)} / {ms(scrape_max)}", "< 100 ms"),
        ("/metrics body (MB)", f"{size / 1e6:.1f}", ""),
        ("idle re-sweep (default: inotify), median / max (ms)", f"{ms(idle_med)} / {ms(idle_max)}", "< 50 ms"),
        ("  CPU while idle (incl. our scrapes), % of a core", f"{idle_cpu * 100:.1f}", ""),
        ("idle re-sweep stat'ing every file (files_watch: false; every 5 min by default), median / max (ms)",
         f"{ms(full_med)} / {ms(full_max)}", "< 50 ms"),
        ("  CPU while idle (incl. our scrapes), % of a core", f"{full_cpu * 100:.1f}", ""),
        ("peak RSS (MB)", f"{peak:.0f}", ""),
    )
    notes = (
        verdict(files_seen == n == restarted_seen, "every file is in /metrics, after a start and a restart"),
        verdict(restart < 1.0, f"restart: first complete /metrics < 1 s ({restart:.3f} s)"),
        verdict(first < 1.0, f"first start ever (nothing stored): first complete /metrics < 1 s ({first:.3f} s)"),
        verdict(scrape_max < 0.1, f"a scrape < 100 ms (max {ms(scrape_max)} ms)"),
        verdict(idle_max < 0.05, f"idle re-sweep < 50 ms (max {ms(idle_max)} ms)"),
        verdict(full_max < 0.05, f"idle re-sweep stat'ing every file < 50 ms (max {ms(full_max)} ms)"),
        "idle re-sweeps in order (ms), inotify: " + ", ".join(ms(d) for d in idle)
        + "; stat'ing every file: " + ", ".join(ms(d) for d in full),
    )
    return [Table(f"{n} certificate files (certloop inventory)", ("measure", "certloop", "target"), rows, notes)]
