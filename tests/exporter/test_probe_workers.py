"""``--web.probe-workers N``: extra processes answer /probe on the same address (SO_REUSEPORT).

The real ``certloop exporter`` CLI runs as a subprocess with two workers; requests go over fresh
connections so the kernel spreads them over all three listeners. The TLS peer is an in-process
OpenSSL server (tests/support/servers.py).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from stack.daemons import CertloopDaemon
from stack.process import LOOPBACK, children_of, wait_until
from tests.support.pki import Pki
from tests.support.servers import ThreadedServer, server_context, tls_after

NAME = "shop.example"


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``port`` (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[3] == "0A" and int(cols[1].rpartition(":")[2], 16) == port:
            inodes.add(f"socket:[{cols[9]}]")
    try:
        return any(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _get(url: str) -> requests.Response:
    with requests.Session() as fresh:  # a new TCP connection each time: SO_REUSEPORT balances per connection
        return fresh.get(url, timeout=10, headers={"Connection": "close"})


@pytest.fixture
def tls_port(tmp_path: Path) -> Iterator[int]:
    leaf = Pki().leaf([NAME, "other.example"])
    with ThreadedServer(tls_after(server_context(leaf, tmp_path, "shop"))) as srv:
        yield srv.port


@pytest.fixture
def exporter(tmp_path: Path, tls_port: int) -> Iterator[CertloopDaemon]:
    config = {
        "global": {"interval": "1h", "files_interval": "1h", "jitter": "0s"},
        "endpoints": [{"targets": [f"{LOOPBACK}:{tls_port}"], "server_name": NAME}],
    }
    daemon = CertloopDaemon.exporter(tmp_path / "exporter", config,
                                     extra_args=("--web.probe-workers=2", "--web.enable-lifecycle"))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def test_workers_probe_and_forward_everything_else(exporter: CertloopDaemon, tls_port: int) -> None:
    """Two worker processes run; /probe answers on every connection, whichever process takes it,
    and /metrics always carries the main process's inventory (a worker has none: it forwards),
    and each worker did part of the probing."""
    assert exporter.process is not None
    workers = children_of(exporter.process.pid)
    assert len(workers) == 2
    wait_until(lambda: all(_listens(pid, exporter.port) for pid in workers), 15,
               "every worker bound to the exporter's address")
    before = {pid: _cpu_ticks(pid) for pid in workers}
    probe = f"{exporter.url}/probe?target={LOOPBACK}:{tls_port}&server_name={NAME}"
    answers = [_get(probe) for _ in range(90)]
    assert all(a.status_code == 200 and "certloop_probe_success{" in a.text for a in answers)
    assert all('} 1\n' in a.text.split("certloop_probe_success{", 1)[1] for a in answers)
    assert all(_cpu_ticks(pid) > ticks for pid, ticks in before.items())
    inventory = f'certloop_probe_success{{source="endpoint",target="{LOOPBACK}:{tls_port}"'
    for _ in range(20):
        page = _get(f"{exporter.url}/metrics")
        assert page.status_code == 200
        assert inventory in page.text
        assert _get(f"{exporter.url}/-/ready").status_code == 200


def test_reload_reaches_the_workers(exporter: CertloopDaemon, tls_port: int) -> None:
    """A module added to the config file and applied with POST /-/reload (forwarded to the main
    process if a worker takes the request) is known to every process afterwards."""
    probe = f"{exporter.url}/probe?target={LOOPBACK}:{tls_port}&module=other"
    assert _get(probe).status_code == 400  # unknown module before the reload
    exporter.config = {**exporter.config, "modules": {"other": {"server_name": "other.example"}}}
    exporter.write_config()
    assert requests.post(f"{exporter.url}/-/reload", timeout=10).status_code == 200
    # Workers reload on SIGHUP, asynchronously: wait until 30 requests in a row (any process) know the module.
    wait_until(lambda: all(_get(probe).status_code == 200 for _ in range(30)), 10, "every worker to know the module")


def test_workers_stop_with_the_main_process(tmp_path: Path, tls_port: int) -> None:
    """SIGTERM to the main process stops its workers too: no orphan keeps the port."""
    config = {"global": {"interval": "1h", "files_interval": "1h", "jitter": "0s"},
              "endpoints": [{"targets": [f"{LOOPBACK}:{tls_port}"]}]}
    daemon = CertloopDaemon.exporter(tmp_path / "exporter", config, extra_args=("--web.probe-workers=1",))
    daemon.start()
    assert daemon.process is not None
    workers = children_of(daemon.process.pid)
    daemon.stop()
    assert len(workers) == 1
    wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), 10, "the workers to stop")


def test_a_dead_worker_is_replaced(tmp_path: Path, tls_port: int) -> None:
    """A worker killed (an OOM kill, a crash) is restarted: the worker count and /probe recover."""
    config = {"global": {"interval": "1h", "files_interval": "1h", "jitter": "0s"},
              "endpoints": [{"targets": [f"{LOOPBACK}:{tls_port}"]}]}
    daemon = CertloopDaemon.exporter(tmp_path / "exporter", config, extra_args=("--web.probe-workers=2",))
    daemon.start()
    try:
        assert daemon.process is not None
        before = children_of(daemon.process.pid)
        assert len(before) == 2
        victim, survivor = sorted(before)
        os.kill(victim, signal.SIGKILL)
        pid = daemon.process.pid

        def replaced() -> bool:
            now = children_of(pid)
            return len(now) == 2 and victim not in now and survivor in now

        wait_until(replaced, 10, "a new worker in the dead one's place")
        probe = f"{daemon.url}/probe?target={LOOPBACK}:{tls_port}"
        # the new worker is up once every answer on the shared port is a probe result
        wait_until(lambda: {requests.get(probe, timeout=10).status_code for _ in range(20)} == {200}, 10,
                   "every /probe answered by a live worker")
        log = (daemon.workdir / "exporter.log").read_text()
        assert f"probe worker {victim} exited (signal 9)" in log
    finally:
        daemon.stop()
