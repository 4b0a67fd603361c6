"""nginx from stack/: serves minted certificates by SNI and by listen address, reloads for real."""

from __future__ import annotations

import socket
import ssl
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from stack.nginx import Nginx, NginxError
from stack.process import free_port
from tests.support.pki import Pki


def served_leaf(host: str, port: int, server_name: str, cafile: Path) -> x509.Certificate:
    """Handshake with a stdlib client that verifies against ``cafile``; return the served leaf."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((host, port), timeout=5) as raw, context.wrap_socket(
        raw, server_hostname=server_name
    ) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_serves_several_names_by_sni_on_one_port(nginx: Nginx, pki: Pki, tmp_path: Path) -> None:
    """Two TLS sites share one port; each SNI name gets its own verified leaf."""
    port = free_port()
    shop = pki.leaf(["shop.example"]).write(tmp_path / "certs", "shop")
    blog = pki.leaf(["blog.example"]).write(tmp_path / "certs", "blog")
    nginx.add_site(["shop.example"], shop["fullchain"], shop["key"], listen=[("127.0.0.1", port)], default=True)
    nginx.add_site(["blog.example"], blog["fullchain"], blog["key"], listen=[("127.0.0.1", port)])
    nginx.start()
    root = pki.write_root(tmp_path / "root.pem")

    shop_leaf = served_leaf("127.0.0.1", port, "shop.example", root)
    assert shop_leaf.serial_number == x509.load_pem_x509_certificate(shop["cert"].read_bytes()).serial_number
    blog_leaf = served_leaf("127.0.0.1", port, "blog.example", root)
    assert blog_leaf.subject.rfc4514_string() == "CN=blog.example"


def test_serves_different_leaves_per_listen_address(nginx: Nginx, pki: Pki, tmp_path: Path) -> None:
    """One name on 127.0.0.1 and 127.0.0.2 (same port) presents a different leaf on each address."""
    port = free_port()
    first = pki.leaf(["multi.example"]).write(tmp_path / "a", "multi")
    second = pki.leaf(["multi.example"]).write(tmp_path / "b", "multi")
    nginx.add_site(["multi.example"], first["fullchain"], first["key"], listen=[("127.0.0.1", port)])
    nginx.add_site(["multi.example"], second["fullchain"], second["key"], listen=[("127.0.0.2", port)])
    nginx.start()
    root = pki.write_root(tmp_path / "root.pem")

    one = served_leaf("127.0.0.1", port, "multi.example", root)
    two = served_leaf("127.0.0.2", port, "multi.example", root)
    assert one.serial_number != two.serial_number
    assert one.serial_number == x509.load_pem_x509_certificate(first["cert"].read_bytes()).serial_number


def test_reload_switches_the_served_certificate(nginx: Nginx, pki: Pki, tmp_path: Path) -> None:
    """Replacing the files and calling reload() (real `nginx -s reload`) serves the new leaf at return."""
    port = free_port()
    paths = pki.leaf(["shop.example"], days=2).write(tmp_path / "live", "shop")
    nginx.add_site(["shop.example"], paths["fullchain"], paths["key"], listen=[("127.0.0.1", port)])
    nginx.start()
    root = pki.write_root(tmp_path / "root.pem")
    old = served_leaf("127.0.0.1", port, "shop.example", root)
    workers_before = nginx.worker_pids()

    renewed = pki.leaf(["shop.example"], days=60)
    paths["fullchain"].write_bytes(renewed.fullchain_pem)
    paths["key"].write_bytes(renewed.key_pem)
    nginx.reload()

    new = served_leaf("127.0.0.1", port, "shop.example", root)
    assert new.serial_number == renewed.cert.serial_number != old.serial_number
    assert not nginx.worker_pids() & workers_before


def test_test_config_rejects_a_missing_certificate(nginx: Nginx, tmp_path: Path) -> None:
    """`nginx -t` through argv_for('test') fails, with nginx's own message, for a missing cert file."""
    nginx.add_site(["x.example"], tmp_path / "absent.pem", tmp_path / "absent.key", listen=[("127.0.0.1", free_port())])
    with pytest.raises(NginxError) as info:
        nginx.test_config()
    assert "absent.pem" in info.value.output
    assert nginx.argv_for("test")[-1] == "-t"
    assert nginx.argv_for("reload")[-2:] == ["-s", "reload"]


def test_http_site_serves_acme_challenge_files(nginx: Nginx, tmp_path: Path) -> None:
    """A plain-HTTP site serves files placed under webroot/.well-known/acme-challenge/."""
    port = free_port()
    webroot = tmp_path / "webroot"
    nginx.add_http_site(["shop.example"], webroot, listen=[("127.0.0.1", port)], default=True)
    nginx.start()
    (webroot / ".well-known" / "acme-challenge" / "tok123").write_text("tok123.thumb")

    url = f"http://127.0.0.1:{port}/.well-known/acme-challenge/tok123"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == b"tok123.thumb"


def test_reload_with_broken_material_fails_and_keeps_serving(nginx: Nginx, pki: Pki, tmp_path: Path) -> None:
    """A reload onto a missing key raises NginxError; the old certificate is still served afterwards."""
    port = free_port()
    paths = pki.leaf(["shop.example"]).write(tmp_path / "live", "shop")
    site = nginx.add_site(["shop.example"], paths["fullchain"], paths["key"], listen=[("127.0.0.1", port)])
    nginx.start()
    root = pki.write_root(tmp_path / "root.pem")
    before = served_leaf("127.0.0.1", port, "shop.example", root)

    nginx.remove_site(site)
    nginx.add_site(["shop.example"], paths["fullchain"], tmp_path / "missing.key", listen=[("127.0.0.1", port)])
    with pytest.raises(NginxError, match=r"missing\.key"):
        nginx.reload()

    assert served_leaf("127.0.0.1", port, "shop.example", root).serial_number == before.serial_number
