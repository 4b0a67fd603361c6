"""--web.config.file on the exporter, scraped by a real Prometheus: TLS with a required client certificate,
and basic authentication with a bcrypt hash, as exporter-toolkit users configure them."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from stack.prometheus import Prometheus
from tests.exporter.support import ExporterProcess, run_cli, write_config
from tests.support.pki import Pki

PASSWORD = "scrape-me-please"


@pytest.fixture
def pki() -> Pki:
    return Pki()


def _files(tmp_path: Path, pki: Pki) -> dict[str, Path]:
    server = pki.leaf(["localhost"], days=30)
    client = pki.client("prometheus")
    files = {"server.pem": server.fullchain_pem, "server.key": server.key_pem, "ca.pem": pki.root_pem,
             "client.pem": client.fullchain_pem, "client.key": client.key_pem}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


def _exporter(tmp_path: Path, web: dict[str, object]) -> ExporterProcess:
    config = write_config(tmp_path / "exporter.yml", {"global": {"interval": "1h"}})
    web_path = tmp_path / "web.yml"
    web_path.write_text(yaml.safe_dump(web))
    return ExporterProcess(config, tmp_path, f"--web.config.file={web_path}")


def test_prometheus_scrapes_over_tls_with_a_client_certificate_and_basic_auth(tmp_path: Path, pki: Pki) -> None:
    files = _files(tmp_path, pki)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    exporter = _exporter(tmp_path, {
        "tls_server_config": {"cert_file": "server.pem", "key_file": "server.key",
                              "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": "ca.pem"},
        "basic_auth_users": {"prometheus": hashed},
    })
    exporter.url = f"https://localhost:{exporter.port}"  # the name the server certificate carries

    def ready() -> bool:
        try:
            return _get(exporter.url + "/-/ready", files, auth=True).status_code == 200
        except requests.RequestException:
            return False

    exporter._ready = ready  # type: ignore[method-assign]
    exporter.start()
    try:
        prom = Prometheus(tmp_path / "prom", [{
            "job_name": "certloop", "scheme": "https",
            "tls_config": {"ca_file": str(files["ca.pem"]), "cert_file": str(files["client.pem"]),
                           "key_file": str(files["client.key"]), "server_name": "localhost"},
            "basic_auth": {"username": "prometheus", "password": PASSWORD},
            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
        }, {
            "job_name": "no-password", "scheme": "https",
            "tls_config": {"ca_file": str(files["ca.pem"]), "cert_file": str(files["client.pem"]),
                           "key_file": str(files["client.key"]), "server_name": "localhost"},
            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
        }, {
            "job_name": "no-client-cert", "scheme": "https",
            "tls_config": {"ca_file": str(files["ca.pem"]), "server_name": "localhost"},
            "basic_auth": {"username": "prometheus", "password": PASSWORD},
            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
        }])
        prom.start()
        try:
            prom.wait_for('up{job="certloop"}', lambda r: bool(r) and r[0]["value"][1] == "1", 30)
            prom.wait_for('certloop_build_info{job="certloop"}', bool, 30)
            prom.wait_for('up{job="no-password"}', lambda r: bool(r) and r[0]["value"][1] == "0", 30)
            prom.wait_for('up{job="no-client-cert"}', lambda r: bool(r) and r[0]["value"][1] == "0", 30)
        finally:
            prom.stop()
        # the same from a plain client: 401 with a challenge, and no answer at all without a certificate
        denied = _get(exporter.url + "/metrics", files, auth=False)
        assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(exporter.url + "/metrics", verify=str(files["ca.pem"]), timeout=5,
                         headers={"Authorization": _basic()})
    finally:
        exporter.stop()


def test_a_bad_web_config_stops_the_exporter_with_the_key_named(tmp_path: Path) -> None:
    config = write_config(tmp_path / "exporter.yml", {"global": {"interval": "1h"}})
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {prometheus: not-a-hash}\n")
    res = run_cli(f"--config.file={config}", f"--web.config.file={web}", "--config.check")
    assert res.returncode == 78
    assert "--web.config.file" in res.stderr and "basic_auth_users: user 'prometheus': expected a bcrypt hash" \
        in res.stderr and "Traceback" not in res.stderr


def _basic() -> str:
    return "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()


def _get(url: str, files: dict[str, Path], *, auth: bool) -> requests.Response:
    return requests.get(url, verify=str(files["ca.pem"]), cert=(str(files["client.pem"]), str(files["client.key"])),
                        headers={"Authorization": _basic()} if auth else {}, timeout=10)
