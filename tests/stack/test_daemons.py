"""stack.daemons: certloop's exporter and renewer run as real processes from dict configs."""

from __future__ import annotations

from pathlib import Path

import requests

from stack.daemons import CertloopDaemon
from stack.nginx import Nginx
from stack.process import free_port
from tests.support.pki import Pki


def test_exporter_process_reports_a_served_certificate(nginx: Nginx, pki: Pki, tmp_path: Path) -> None:
    """The exporter started by stack/ sweeps a real nginx and exports its leaf's expiry with static labels."""
    port = free_port()
    leaf = pki.leaf(["shop.example"], days=5)
    paths = leaf.write(tmp_path / "certs", "shop")
    nginx.add_site(["shop.example"], paths["fullchain"], paths["key"], listen=[("127.0.0.1", port)])
    nginx.start()
    exporter = CertloopDaemon.exporter(tmp_path / "exporter", {
        "global": {"interval": "1s", "jitter": "0s"},
        "endpoints": [{"targets": [f"127.0.0.1:{port}"], "server_name": "shop.example",
                       "labels": {"certificate": "shop"}}],
    })
    exporter.start()
    try:
        text = exporter.metrics()
    finally:
        exporter.stop()
    expiry = int(leaf.cert.not_valid_after_utc.timestamp())
    lines = [line for line in text.splitlines()
             if line.startswith("certloop_cert_not_after_timestamp_seconds{") and 'position="0"' in line]
    assert lines and 'certificate="shop"' in lines[0]
    assert float(lines[0].rsplit(" ", 1)[1]) == expiry
    assert not exporter.running


def test_renewer_process_requires_its_token(tmp_path: Path) -> None:
    """The renewer started by stack/ is ready on its port and refuses a webhook without the bearer token."""
    renewer = CertloopDaemon.renewer(tmp_path / "renewer", {"auth": {"token": "0123456789abcdef-token"}})
    renewer.start()
    try:
        response = requests.post(f"{renewer.url}/api/v1/alertmanager", json={"alerts": []}, timeout=5)
    finally:
        renewer.stop()
    assert response.status_code == 401
