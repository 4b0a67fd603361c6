"""--web.config.file on the renewer, scraped by a real Prometheus: TLS from the web config with a required
client certificate, and a person's bcrypt password (role viewer) as Prometheus' basic_auth; the version
flag agrees with certloop_renewer_build_info."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from certloop import __version__
from stack.prometheus import Prometheus
from tests.renewer.conftest import RenewerProcess, Setup
from tests.support.pki import Pki

PASSWORD = "prometheus-scrapes-me"


def test_prometheus_scrapes_the_renewer_over_tls_with_a_client_certificate_and_basic_auth(
    make_setup: Callable[..., Setup], start_renewer: Callable[..., RenewerProcess], tmp_path: Path,
) -> None:
    pki = Pki()
    server, client = pki.leaf(["localhost"], days=30), pki.client("prometheus")
    files = {"server.pem": server.fullchain_pem, "server.key": server.key_pem, "ca.pem": pki.root_pem,
             "client.pem": client.fullchain_pem, "client.key": client.key_pem}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "server.pem", "key_file": "server.key",
                              "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": "ca.pem"},
        "basic_auth_users": {"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()},
    }))
    setup = make_setup(["shop"])
    setup.data["auth"]["users"] = {"prometheus": "viewer"}
    setup.write()
    renewer = start_renewer(setup.path, extra=[f"--web.config.file={web}"])
    tls = {"ca_file": str(tmp_path / "ca.pem"), "cert_file": str(tmp_path / "client.pem"),
           "key_file": str(tmp_path / "client.key"), "server_name": "localhost"}
    target = {"targets": [f"127.0.0.1:{renewer.port}"]}
    prom = Prometheus(tmp_path / "prom", [
        {"job_name": "renewer", "scheme": "https", "tls_config": tls,
         "basic_auth": {"username": "prometheus", "password": PASSWORD}, "static_configs": [target]},
        {"job_name": "wrong-password", "scheme": "https", "tls_config": tls,
         "basic_auth": {"username": "prometheus", "password": "nope"}, "static_configs": [target]},
        {"job_name": "no-client-cert", "scheme": "https", "tls_config": {"ca_file": tls["ca_file"],
                                                                         "server_name": "localhost"},
         "basic_auth": {"username": "prometheus", "password": PASSWORD}, "static_configs": [target]},
    ])
    prom.start()
    try:
        prom.wait_for('up{job="renewer"}', lambda r: bool(r) and r[0]["value"][1] == "1", 30)
        info = prom.wait_for('certloop_renewer_build_info{job="renewer"}', bool, 30)
        assert info[0]["metric"]["version"] == __version__
        prom.wait_for('up{job="wrong-password"}', lambda r: bool(r) and r[0]["value"][1] == "0", 30)
        prom.wait_for('up{job="no-client-cert"}', lambda r: bool(r) and r[0]["value"][1] == "0", 30)
    finally:
        prom.stop()
    with pytest.raises(requests.exceptions.ConnectionError):  # no client certificate: no TLS session at all
        requests.get(f"https://localhost:{renewer.port}/-/healthy", verify=tls["ca_file"], timeout=5)


@pytest.mark.parametrize("command", [[], ["exporter"], ["renewer"]])
def test_version_flags_match_the_build_info_version(command: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "certloop.cli", *command, "--version"], capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out[-1] == __version__ and out[0] == "certloop"
