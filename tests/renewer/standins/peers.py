"""Real peers for the renewer's issuer and pipeline tests: pebble + challtestsrv + nginx on loopback.

``AcmeStack`` wires them the way http-01 needs: pebble resolves every name through challtestsrv
(default A record 127.0.0.1) and validates on nginx's plain-HTTP port, where nginx serves the
webroot the issuers write tokens into. A TLS site on another free port serves the "live"
certificate files the pipeline replaces, starting with a leaf minted close to expiry.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certloop.renewer.context import RenewalContext
from certloop.renewer.keystore import Keystore
from stack.challtestsrv import ChallTestSrv
from stack.nginx import Nginx
from stack.pebble import Pebble
from stack.process import free_port
from tests.support.pki import Issued, Pki

DOMAIN = "shop.example"
STANDINS = Path(__file__).resolve().parent


@dataclass
class AcmeStack:
    pebble: Pebble
    challtestsrv: ChallTestSrv
    nginx: Nginx
    webroot: Path
    http_port: int
    tls_port: int
    live: dict[str, Path]  # cert (leaf), key, fullchain, chain as nginx reads them
    old: Issued  # the near-expiry certificate nginx serves at the start
    data_dir: Path

    def context(self, **kwargs: object) -> RenewalContext:
        return RenewalContext(
            data_dir=self.data_dir,
            clock=lambda: datetime.now(UTC),
            keystore=Keystore(b"k" * 32),
            **kwargs,  # type: ignore[arg-type]
        )

    def deploy_steps(self) -> list[list[str]]:
        return [self.nginx.argv_for("test"), self.nginx.argv_for("reload")]

    def spec_data(self, issuer: dict[str, object], **extra: object) -> dict[str, object]:
        """A CertificateSpec document for DOMAIN installed where nginx reads it."""
        doc: dict[str, object] = {
            "id": "shop",
            "domains": [DOMAIN],
            "issuer": issuer,
            "outputs": {"fullchain": str(self.live["fullchain"]), "key": str(self.live["key"])},
            "deploy": self.deploy_steps(),
            "verify": {
                "endpoints": [{"endpoint": f"127.0.0.1:{self.tls_port}", "server_name": DOMAIN}],
                "timeout": "10s",
            },
            "trust_bundle": str(self.pebble.trust_bundle_path),
        }
        doc.update(extra)
        return doc


def start_stack(tmp_path: Path, challtestsrv: ChallTestSrv, pki: Pki) -> Iterator[AcmeStack]:
    """Start nginx (http webroot + TLS site serving a 2-day leaf) and pebble validating against it."""
    http_port, tls_port = free_port(), free_port()
    webroot = tmp_path / "webroot"
    old = pki.leaf([DOMAIN], days=2)
    live_dir = tmp_path / "live"
    paths = old.write(live_dir, "shop")
    nginx = Nginx(tmp_path / "nginx")
    nginx.add_http_site([DOMAIN], webroot, listen=[("127.0.0.1", http_port)], default=True)
    nginx.add_site([DOMAIN], paths["fullchain"], paths["key"], listen=[("127.0.0.1", tls_port)], default=True)
    pebble = Pebble(tmp_path / "pebble", dns_server=challtestsrv.dns_address, http_port=http_port)
    try:
        nginx.start()
        pebble.start()
        yield AcmeStack(
            pebble=pebble,
            challtestsrv=challtestsrv,
            nginx=nginx,
            webroot=webroot,
            http_port=http_port,
            tls_port=tls_port,
            live=paths,
            old=old,
            data_dir=tmp_path / "data",
        )
    finally:
        pebble.stop()
        nginx.stop()


@pytest.fixture(name="acme_stack")
def acme_stack_fixture(tmp_path: Path, challtestsrv: ChallTestSrv, pki: Pki) -> Iterator[AcmeStack]:
    yield from start_stack(tmp_path, challtestsrv, pki)


def standin_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Pki) -> Path:
    """Put the stand-ins (and this venv's python3, their interpreter) first on PATH, give them the
    test CA to mint from, and return the file they record their argv into (JSON lines)."""
    ca_dir = tmp_path / "standin-ca"
    ca_dir.mkdir(exist_ok=True)
    (ca_dir / "ca.pem").write_bytes(pki.intermediate.pem)
    (ca_dir / "ca.key").write_bytes(pki.intermediate.key_pem)
    record = tmp_path / "standin-argv.jsonl"
    path = os.pathsep.join([str(STANDINS), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("CERTLOOP_STANDIN_CA_DIR", str(ca_dir))
    monkeypatch.setenv("CERTLOOP_STANDIN_RECORD", str(record))
    return record


def recorded(record: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
