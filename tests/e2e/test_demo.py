"""`make demo` as a user runs it: the check table, the loop closing, then SIGTERM/Ctrl-C stops every peer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from stack.process import children_of, wait_until


def _alive(pids: frozenset[int]) -> list[str]:
    """Command lines of the `pids` still running (zombies are gone for our purpose)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z":
            alive.append(f"{pid}: {cmd.strip()}")
    return alive


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_closes_the_loop_then_stops_everything_on_a_signal(tmp_path: Path, signum: int) -> None:
    """The demo prints the `certloop check` table and the closed loop, waits, and on SIGTERM or Ctrl-C
    (SIGINT) exits 0 having stopped every process it started."""
    workdir = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stack.demo", "--workdir", str(workdir)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        def tail() -> str:
            return log.read_text(errors="replace")[-3000:]

        def waiting_for_ctrl_c() -> bool:
            assert proc.poll() is None, tail()
            return "Press Ctrl-C" in log.read_text(errors="replace")

        try:
            wait_until(waiting_for_ctrl_c, 120, "the demo to be up", interval=0.2, log_tail=tail)
            text = log.read_text()
            assert "healthy.demo" in text and " OK" in text
            assert "EXPIRED (expired)" in text
            assert "INVALID (hostname_mismatch)" in text
            assert "loop closed" in text
            status = re.search(r"status page +(http://127\.0\.0\.1:[0-9]+/status)", text)
            creds = dict(re.findall(r"(viewer|operator) +user (?:viewer|operator), password (\S+)", text))
            assert status and set(creds) == {"viewer", "operator"}, text[-2000:]
            page = requests.get(status.group(1), auth=("viewer", creds["viewer"]), timeout=10)
            assert page.status_code == 200 and 'id="cert-shop"' in page.text and "Renew now" not in page.text
            page = requests.get(status.group(1), auth=("operator", creds["operator"]), timeout=10)
            assert page.status_code == 200 and "Renew now" in page.text
            peers = children_of(proc.pid)
            assert len(peers) >= 7, "DNS, pebble, nginx, exporter, renewer, Alertmanager, Prometheus should run"
            proc.send_signal(signum)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "== stopping everything started" in log.read_text()
    wait_until(lambda: not _alive(peers), 10, "every peer to stop", log_tail=lambda: "\n".join(_alive(peers)))
