"""The generated rules on a real Prometheus scraping the real certloop exporter.

The promtool tests prove the logic on synthetic series; this proves the contract end to end: the
exporter's real metric names and labels, read from certificate files minted for the test, make the
lifetime-relative expiry and weak-crypto alerts go pending in a real Prometheus with the right labels,
and leave a healthy certificate alone. (`for:` durations are minutes, so the alerts stay pending here.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from certloop.alerting.build import GENERATED_DIR, RULES_FILE
from stack.nginx import Nginx
from stack.process import LOOPBACK, Process, free_port, wait_until
from stack.prometheus import Prometheus
from tests.support.pki import Pki

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 45.0


@contextmanager
def running_exporter(tmp_path: Path, config: dict[str, Any]) -> Iterator[str]:
    """`certloop exporter` as a real child process with `config`; yields its base URL."""
    config_path = tmp_path / "exporter.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    argv = [sys.executable, "-m", "certloop.cli", "exporter", f"--config.file={config_path}",
            f"--web.listen-address={LOOPBACK}:{port}"]
    process = Process(argv, name="certloop-exporter", log_path=tmp_path / "exporter.log",
                      env={**os.environ, "PYTHONPATH": str(ROOT)})
    process.start()
    try:
        process.wait_until(lambda: _ok(f"{url}/-/ready"), 30, f"{url}/-/ready")
        yield url
    finally:
        process.stop()


def scraped_by_prometheus(factory: Callable[..., Prometheus], exporter_url: str) -> Prometheus:
    """A real Prometheus scraping the exporter every second as job certloop-exporter, with the rules."""
    target = exporter_url.removeprefix("http://")
    return factory([{"job_name": "certloop-exporter", "static_configs": [{"targets": [target]}]}],
                   rule_files=[GENERATED_DIR / RULES_FILE])


@pytest.fixture
def exporter_url(tmp_path: Path, pki: Pki) -> Iterator[str]:
    """A running `certloop exporter` watching three certificate files:
    short (6-day lifetime, 12h left), long (90-day, 40d left) and legacy (RSA-1024, 60d left)."""
    certs = tmp_path / "certs"
    pki.leaf(["short.example"], not_before=pki.now - timedelta(days=5, hours=12),
             not_after=pki.now + timedelta(hours=12)).write(certs / "short", "short")
    pki.leaf(["long.example"], not_before=pki.now - timedelta(days=50),
             not_after=pki.now + timedelta(days=40)).write(certs / "long", "long")
    pki.leaf(["legacy.example"], days=60, key_kind="rsa1024").write(certs / "legacy", "legacy")
    files = [{"paths": [str(certs / name / f"{name}.fullchain.pem")], "labels": {"certificate": name, "team": "web"}}
             for name in ("short", "long", "legacy")]
    ca_file = pki.write_root(tmp_path / "root.pem")  # the test CA is the trust store, as for a private CA
    with running_exporter(tmp_path, {"global": {"files_interval": "1s", "ca_file": str(ca_file)},
                                     "files": files}) as url:
        yield url


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _find(alerts: list[dict[str, Any]], alertname: str, certificate: str) -> list[dict[str, Any]]:
    return [a for a in alerts
            if a["labels"]["alertname"] == alertname and a["labels"].get("certificate") == certificate]


def test_expiry_and_weak_crypto_alerts_from_the_real_exporter(
    exporter_url: str, prometheus_factory: Callable[..., Prometheus], tmp_path: Path
) -> None:
    """A 6-day certificate with 12h left is expiring soon (critical at 1d) and expiring (warning at 2d);
    the RSA-1024 one is weak; the 90-day one with 40d left (warning at 30d) raises nothing."""
    prom = scraped_by_prometheus(prometheus_factory, exporter_url)
    expected = [("CertloopCertificateExpiringSoon", "short"), ("CertloopCertificateExpiring", "short"),
                ("CertloopCertificateWeakCrypto", "legacy")]
    prom.wait_for('count(certloop:cert_expiry_warning_threshold_seconds{certificate="long"})',
                  lambda result: bool(result), DEADLINE)

    wait_until(lambda: all(_find(prom.alerts(), name, cert) for name, cert in expected), DEADLINE,
               f"alerts {expected} pending in Prometheus")
    alerts = prom.alerts()
    [soon] = _find(alerts, "CertloopCertificateExpiringSoon", "short")
    assert soon["state"] in ("pending", "firing")
    labels = soon["labels"]
    assert labels["severity"] == "critical" and labels["team"] == "web" and labels["source"] == "file"
    assert labels["role"] == "leaf" and labels["target"].endswith("short.fullchain.pem")
    assert soon["annotations"]["summary"].startswith('TLS certificate "short" in file ')
    assert soon["annotations"]["time_left"].startswith(("11h 5", "12h 0"))
    [weak] = _find(alerts, "CertloopCertificateWeakCrypto", "legacy")
    assert " 1024 bits, signed with " in weak["annotations"]["description"]  # key and algorithm from _info
    assert not [a for a in alerts if a["labels"].get("certificate") == "long"]

    thresholds = {
        (s["metric"]["certificate"], s["metric"]["__name__"]): float(s["value"][1])
        for s in prom.query('{__name__=~"certloop:cert_expiry_(warning|critical)_threshold_seconds"}')
    }
    day = 86400.0
    assert thresholds[("short", "certloop:cert_expiry_critical_threshold_seconds")] == pytest.approx(day)
    assert thresholds[("short", "certloop:cert_expiry_warning_threshold_seconds")] == pytest.approx(2 * day)
    assert thresholds[("long", "certloop:cert_expiry_warning_threshold_seconds")] == pytest.approx(30 * day)
    assert thresholds[("long", "certloop:cert_expiry_critical_threshold_seconds")] == pytest.approx(14 * day)


def test_drift_and_hostname_alerts_from_a_real_nginx(
    nginx: Nginx, pki: Pki, prometheus_factory: Callable[..., Prometheus], tmp_path: Path
) -> None:
    """nginx still serves the old shop certificate although a renewed one is on disk (drift), and answers
    a name its certificate does not cover (hostname mismatch); both alerts carry the endpoint's labels."""
    old = pki.leaf(["shop.example"], days=60).write(tmp_path / "served", "shop")
    renewed = pki.leaf(["shop.example"], days=90).write(tmp_path / "disk", "shop")
    port, other_port = free_port(), free_port()
    nginx.add_site(["shop.example"], old["fullchain"], old["key"], listen=[(LOOPBACK, port), (LOOPBACK, other_port)],
                   default=True)
    nginx.start()
    target = f"{LOOPBACK}:{port}"
    config = {
        "global": {"interval": "1s", "ca_file": str(pki.write_root(tmp_path / "root.pem"))},
        "endpoints": [
            {"targets": [target], "server_name": "shop.example", "expect_file": str(renewed["fullchain"]),
             "labels": {"certificate": "shop", "team": "web"}},
            {"targets": [f"{LOOPBACK}:{other_port}"], "server_name": "www.example",
             "labels": {"certificate": "www", "team": "web"}},
        ],
    }
    with running_exporter(tmp_path, config) as url:
        prom = scraped_by_prometheus(prometheus_factory, url)
        expected = [("CertloopServedCertificateDiffersFromFile", "shop"),
                    ("CertloopCertificateHostnameMismatch", "www")]
        wait_until(lambda: all(_find(prom.alerts(), name, cert) for name, cert in expected), DEADLINE,
                   f"alerts {expected} pending in Prometheus")
        alerts = prom.alerts()
    [drift] = _find(alerts, "CertloopServedCertificateDiffersFromFile", "shop")
    assert drift["labels"]["expect_file"] == str(renewed["fullchain"])
    assert drift["labels"]["source"] == "endpoint" and drift["labels"]["target"] == target
    assert drift["labels"]["address"] == LOOPBACK and drift["labels"]["severity"] == "major"
    assert drift["annotations"]["summary"] == (
        f"The certificate served at {target} differs from {renewed['fullchain']}")
    [mismatch] = _find(alerts, "CertloopCertificateHostnameMismatch", "www")
    assert mismatch["labels"]["severity"] == "critical" and mismatch["labels"]["team"] == "web"
    assert not _find(alerts, "CertloopCertificateHostnameMismatch", "shop")
    assert not _find(alerts, "CertloopCertificateVerificationFailing", "shop")
