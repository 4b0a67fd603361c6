"""Scenario ``renewal``: one renewal from alert to verified-served, against pebble and nginx.

Real peers on loopback: pebble-challtestsrv (DNS), pebble (ACME, http-01 through nginx's webroot),
nginx serving a certificate with 2 of its 30 days left, and ``certloop renewer`` with the ``acme``
issuer, deploy steps ``nginx -t`` and ``nginx -s reload`` and a verify endpoint. Each attempt seeds
an expiring certificate, posts the Alertmanager webhook the expiry alert would send, and times until
nginx serves a new leaf (polled every 20 ms over TLS). The renewer's own job timing is shown too.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from benchmarks.report import Table, verdict
from benchmarks.webhook import payload
from stack.challtestsrv import ChallTestSrv
from stack.daemons import CertloopDaemon
from stack.loop import mint_expiring
from stack.nginx import Nginx
from stack.pebble import Pebble
from stack.process import LOOPBACK, ProcessGroup, free_port

DOMAIN = "shop.bench"
CERT_ID = "shop"


def served_leaf(port: int) -> x509.Certificate | None:
    """The leaf served for DOMAIN on ``port`` (None while nginx cannot answer)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((LOOPBACK, port), timeout=2) as raw, ctx.wrap_socket(
            raw, server_hostname=DOMAIN
        ) as tls:
            der = tls.getpeercert(binary_form=True)
    except OSError:
        return None
    return x509.load_der_x509_certificate(der) if der else None


def served_fingerprint(port: int) -> str | None:
    leaf = served_leaf(port)
    return leaf.fingerprint(hashes.SHA256()).hex() if leaf is not None else None


def run(workdir: Path, *, attempts: int, say: Callable[[str], None], timeout: float = 60.0) -> list[Table]:
    workdir = workdir.resolve()
    tls_port, http_port = free_port(), free_port()
    live, webroot = workdir / "live", workdir / "webroot"
    token = secrets.token_urlsafe(24)
    times: list[float] = []
    with ProcessGroup() as group:
        dns = group.add(ChallTestSrv(free_port(), free_port(), workdir=workdir / "dns"))
        dns.start()
        dns.add_a(DOMAIN, [LOOPBACK])
        pebble = group.add(Pebble(workdir / "pebble", dns.dns_address, http_port=http_port))
        pebble.start()
        chain, key, _ = mint_expiring(live, lifetime=timedelta(days=30), left=timedelta(days=2), domain=DOMAIN,
                                      name=CERT_ID)
        web = group.add(Nginx(workdir / "nginx"))
        web.add_site([DOMAIN], chain, key, [(LOOPBACK, tls_port)], default=True)
        web.add_http_site([DOMAIN], webroot, [(LOOPBACK, http_port)], default=True)
        web.start()
        renewer = group.add(CertloopDaemon.renewer(workdir / "renewer", {
            "auth": {"token": token},
            "worker": {"concurrency": 1, "poll_interval": "250ms", "backoff_base": "1s", "backoff_max": "3s"},
            "scheduler": {"enabled": False},
            "certificates": [{
                "id": CERT_ID, "domains": [DOMAIN],
                "issuer": {"type": "acme", "directory": pebble.directory_url, "ca_bundle": str(pebble.ca_bundle_path),
                           "email": f"ops@{DOMAIN}", "http01": {"webroot": str(webroot)}, "poll_timeout": "30s"},
                "outputs": {"fullchain": str(chain), "key": str(key)},
                "deploy": [web.argv_for("test"), web.argv_for("reload")],
                "verify": {"endpoints": [{"endpoint": f"{LOOPBACK}:{tls_port}", "server_name": DOMAIN}],
                           "timeout": "20s"},
                "renew_before": "1/3", "min_lifetime": "1h",
            }],
        }))
        renewer.start()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for attempt in range(attempts):
            if attempt:  # seed a fresh expiring certificate, as if the last renewal were long ago
                mint_expiring(live, lifetime=timedelta(days=30), left=timedelta(days=2), domain=DOMAIN, name=CERT_ID)
                web.reload()
            before = x509.load_pem_x509_certificate(chain.read_bytes()).fingerprint(hashes.SHA256()).hex()
            _wait_serving(tls_port, before, timeout)
            body = payload(CERT_ID, attempt, datetime.now(UTC)).encode()
            started = time.monotonic()
            answer = requests.post(f"{renewer.url}/api/v1/alertmanager", data=body, headers=headers, timeout=10)
            answer.raise_for_status()
            while True:  # one TLS observation per poll: during a reload old and new workers both answer
                leaf = served_leaf(tls_port)
                now = leaf.fingerprint(hashes.SHA256()).hex() if leaf is not None else None
                if now not in (before, None):
                    break
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"renewal attempt {attempt + 1}: nginx still serves the old leaf "
                                       f"after {timeout:g}s; see {renewer.workdir}")
                time.sleep(0.02)
            times.append(time.monotonic() - started)
            issuer = leaf.issuer.rfc4514_string() if leaf is not None else "?"
            if "Pebble" not in issuer:
                raise RuntimeError(f"renewal attempt {attempt + 1}: the new leaf is not from pebble ({issuer})")
            say(f"  renewal {attempt + 1}: alert -> new leaf served in {times[-1]:.2f} s "
                f"(sha256 {str(now)[:16]}..., issuer {issuer})")
            _wait_job_finished(renewer.url, headers, timeout)
    rows = (*((f"attempt {i + 1}", f"{t:.2f}") for i, t in enumerate(times)),
            ("median", f"{statistics.median(times):.2f}"))
    notes = (verdict(max(times) < 10, f"alert to served < 10 s (max {max(times):.2f} s)"),)
    return [Table("one renewal, alert to new leaf served (pebble http-01, nginx -t + reload, verified)",
                  ("attempt", "seconds"), rows, notes)]


def _wait_serving(port: int, fingerprint: str, timeout: float, streak: int = 5) -> None:
    """Wait until nginx serves ``fingerprint`` on ``streak`` connections in a row (a reload has settled)."""
    deadline, seen = time.monotonic() + timeout, 0
    while seen < streak:
        if time.monotonic() > deadline:
            raise TimeoutError(f"nginx does not settle on the seeded leaf {fingerprint[:16]}...")
        seen = seen + 1 if served_fingerprint(port) == fingerprint else 0
        time.sleep(0.02)


def _wait_job_finished(url: str, headers: dict[str, str], timeout: float) -> None:
    """Let the renewer finish verifying (state succeeded) before the next attempt seeds new material."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = requests.get(f"{url}/api/v1/jobs", headers=headers, timeout=10).json().get("jobs", [])
        if jobs and all(j.get("state") in ("succeeded", "failed", "rolled_back") for j in jobs):
            return
        time.sleep(0.1)
    raise TimeoutError("renewal job did not finish")
