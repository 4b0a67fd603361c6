"""docs/renewer.md's "standalone behind nginx" recipe works: real nginx proxies the challenge path to the
built-in issuer's standalone listener, and the documented issuer snippet is a valid config.

The nginx server block and the `http01: {listen: ...}` snippet are taken from the doc; only the ports
change (port 80 and 8402 become free loopback ports).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import requests
import yaml

from certloop.config import validate_model
from certloop.renewer.issuers.challenges import StandaloneSolver
from certloop.renewer.spec import CertificateSpec
from stack.nginx import Listen, Nginx
from stack.process import LOOPBACK, free_port
from tests.docs.markdown import ROOT, fenced_blocks

DOC = ROOT / "docs" / "renewer.md"
DOC_LISTENER = "127.0.0.1:8402"


def _documented(language: str, marker: str) -> str:
    [block] = [text for _, text in fenced_blocks(DOC, language) if marker in text]
    return block


class _DocumentedNginx(Nginx):
    """The stack's nginx (prefix, pid, logs in the test's directory) serving only the documented block."""

    def __init__(self, workdir: Path, server_block: str, port: int) -> None:
        super().__init__(workdir)
        self.server_block = server_block
        self.port = port

    @property
    def listen_addresses(self) -> list[Listen]:
        return [(LOOPBACK, self.port)]

    def render(self) -> str:
        conf = super().render()
        end = conf.rstrip().rfind("}")
        return conf[:end] + self.server_block + "\n}\n"


def _get(port: int, path: str) -> requests.Response:
    return requests.get(f"http://{LOOPBACK}:{port}{path}", headers={"Host": "shop.example.com"},
                        allow_redirects=False, timeout=5)


def test_documented_issuer_snippet_is_a_valid_standalone_config() -> None:
    """The YAML next to the nginx block validates as an issuer listening on the documented port."""
    issuer: dict[str, Any] = yaml.safe_load(_documented("yaml", "http01: {listen:"))["issuer"]
    spec = validate_model(CertificateSpec, {
        "id": "shop", "domains": ["shop.example.com"], "issuer": issuer,
        "outputs": {"fullchain": "/etc/nginx/tls/shop.pem", "key": "/etc/nginx/tls/shop.key"},
    })
    assert spec.issuer.type == "acme"
    assert spec.issuer.http01 is not None and spec.issuer.http01.listen == DOC_LISTENER


def test_nginx_proxies_the_challenge_to_the_standalone_listener(tmp_path: Path) -> None:
    """While an order is validated the CA gets the key authorization through nginx; other paths keep
    nginx's own answer; with no listener (between renewals) the challenge path answers 502."""
    block = _documented("nginx", "proxy_pass")
    assert "listen 80;" in block and DOC_LISTENER in block
    http_port, solver_port = free_port(), free_port()
    block = block.replace("listen 80;", f"listen {LOOPBACK}:{http_port};")
    block = block.replace(DOC_LISTENER, f"{LOOPBACK}:{solver_port}")
    web = _DocumentedNginx(tmp_path / "nginx", block, http_port)
    web.start()
    try:
        solver = StandaloneSolver(f"{LOOPBACK}:{solver_port}")

        async def during_validation() -> tuple[requests.Response, requests.Response]:
            async with solver.present("shop.example.com", "tok-123_ABC", "tok-123_ABC.thumbprint"):
                answered = await asyncio.to_thread(_get, http_port, "/.well-known/acme-challenge/tok-123_ABC")
                unknown = await asyncio.to_thread(_get, http_port, "/.well-known/acme-challenge/other")
            return answered, unknown

        answered, unknown = asyncio.run(during_validation())
        assert answered.status_code == 200 and answered.text == "tok-123_ABC.thumbprint"
        assert unknown.status_code == 404
        assert _get(http_port, "/shop").status_code == 301
        assert _get(http_port, "/shop").headers["Location"] == "https://shop.example.com/shop"
        assert _get(http_port, "/.well-known/acme-challenge/tok-123_ABC").status_code == 502
        assert re.search(r"connect\(\) failed", (web.error_log).read_text(encoding="utf-8"))
    finally:
        web.stop()
