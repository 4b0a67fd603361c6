"""Scenario ``webhook``: the renewer's Alertmanager intake under load while renewals run.

A real ``certloop renewer`` (SQLite in its data directory, the ``command`` issuer running
benchmarks/issue_command.py, worker concurrency 2) manages C certificates. wrk posts Alertmanager v4
payloads with the bearer token over keep-alive connections: each certificate's alert is delivered
again and again (HA Alertmanagers and repeat notifications), so the first delivery queues a renewal
and the rest are duplicates, while the worker issues and installs in the background. Measured:
requests/s, latency p50/p99, non-202 answers, renewer CPU per request, renewals finished meanwhile.
No peer: no other tool takes an Alertmanager webhook.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests

from benchmarks import procstat
from benchmarks.load import run_wrk
from benchmarks.peers import daemon_pid
from benchmarks.report import Table, ms, verdict
from stack.daemons import CertloopDaemon

ISSUER = Path(__file__).with_name("issue_command.py")
DELIVERIES = 5  # distinct payloads per certificate (wrk cycles through them: duplicates galore)


def payload(certificate: str, delivery: int, starts_at: datetime) -> str:
    """One Alertmanager webhook (version 4) with a firing expiry alert for ``certificate``, one line."""
    labels = {"alertname": "CertloopCertificateExpiringSoon", "certificate": certificate, "severity": "critical",
              "source": "endpoint", "target": f"{certificate}.bench:443", "team": "web"}
    return json.dumps({
        "version": "4", "groupKey": f'{{}}/{{}}:{{alertname="{labels["alertname"]}", certificate="{certificate}"}}',
        "truncatedAlerts": 0, "status": "firing", "receiver": "certloop-renewer",
        "groupLabels": {"alertname": labels["alertname"], "certificate": certificate},
        "commonLabels": labels,
        "commonAnnotations": {"summary": f"{certificate} expires in 6 days"},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": "firing", "labels": labels,
            "annotations": {"summary": f"{certificate} expires in 6 days", "delivery": str(delivery),
                            "runbook_url": "https://example.invalid/runbooks/expiring"},
            "startsAt": starts_at.isoformat().replace("+00:00", "Z"), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=certloop", "fingerprint": secrets.token_hex(8),
        }],
    }, separators=(",", ":"))


def renewer_config(workdir: Path, certificates: int, token: str) -> dict[str, object]:
    live = workdir / "live"
    live.mkdir(parents=True, exist_ok=True)
    return {
        "auth": {"token": token},
        "worker": {"concurrency": 2, "poll_interval": "250ms", "backoff_base": "1s", "backoff_max": "3s"},
        "scheduler": {"enabled": False},
        "certificates": [
            {
                "id": f"c{i:04d}", "domains": [f"c{i:04d}.bench"],
                "issuer": {"type": "command", "argv": [sys.executable, str(ISSUER)]},
                "outputs": {"fullchain": str(live / f"c{i:04d}.pem"), "key": str(live / f"c{i:04d}.key")},
                "renew_before": "1/3",
            }
            for i in range(certificates)
        ],
    }


def _succeeded(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=30).text
    pattern = r'^certloop_renewer_renewals_total\{[^}]*result="succeeded"[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def run(workdir: Path, *, certificates: int, seconds: int, concurrencies: list[int],
        say: Callable[[str], None]) -> list[Table]:
    """One renewer, loaded at each concurrency in turn (a fresh renewer per level: a fair queue state)."""
    return [_run_one(workdir / f"c{c}", certificates=certificates, seconds=seconds, concurrency=c, say=say)
            for c in concurrencies]


def _run_one(workdir: Path, *, certificates: int, seconds: int, concurrency: int, say: Callable[[str], None]) -> Table:
    token = secrets.token_urlsafe(24)
    daemon = CertloopDaemon.renewer(workdir / "renewer", renewer_config(workdir, certificates, token))
    daemon.start()
    now = datetime.now(UTC)
    bodies = [payload(f"c{i:04d}", d, now) for d in range(DELIVERIES) for i in range(certificates)]
    path = "/api/v1/alertmanager"
    pid = daemon_pid(daemon)
    try:
        run_wrk(daemon.url, bodies[:certificates], seconds=1, workdir=workdir, connections=concurrency,
                post_path=path, token=token)  # warm-up; also queues the first renewals
        done0, cpu0 = _succeeded(daemon.url), procstat.cpu_seconds(pid)
        load = run_wrk(daemon.url, bodies, seconds=seconds, workdir=workdir, connections=concurrency,
                       post_path=path, token=token)
        cpu = procstat.cpu_seconds(pid) - cpu0
        renewed = _succeeded(daemon.url) - done0
        peak = procstat.peak_rss_mb(pid)
    finally:
        daemon.stop()
    say(f"  webhook at concurrency {concurrency}: {load.rate:.0f} req/s, p99 {ms(load.p99)} ms, "
        f"{renewed:.0f} renewals finished meanwhile")
    failed = load.failures + load.socket_errors
    rows = (
        ("requests (keep-alive, concurrency)", f"{load.requests} ({concurrency})", ""),
        ("requests/s", f"{load.rate:.0f}", ">= 1000"),
        ("latency p50 / p90 / p99 / max (ms)", f"{ms(load.p50)} / {ms(load.p90)} / {ms(load.p99)} / {ms(load.max)}",
         "p99 < 50 ms"),
        ("answers other than 2xx, socket errors", f"{load.failures}, {load.socket_errors}", "0"),
        ("renewer CPU ms per request", ms(cpu / load.requests if load.requests else 0.0), ""),
        ("wrk CPU ms per request", ms(load.client_cpu / load.requests if load.requests else 0.0), ""),
        ("renewals finished during the load", f"{renewed:.0f}", "> 0"),
        ("renewer peak RSS (MB)", f"{peak:.0f}", ""),
    )
    notes = (
        verdict(load.rate >= 1000, f">= 1,000 requests/s ({load.rate:.0f})"),
        verdict(load.p99 < 0.05, f"p99 < 50 ms ({ms(load.p99)} ms)"),
        verdict(renewed > 0, "renewals ran during the load"),
        verdict(failed == 0, "every request answered 2xx"),
    )
    return Table(f"webhook intake, concurrency {concurrency}, {certificates} certificates x {DELIVERIES} deliveries, "
                 f"{seconds} s", ("measure", "certloop renewer", "target"), rows, notes)
