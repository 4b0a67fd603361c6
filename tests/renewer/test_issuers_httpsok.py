"""The httpsok issuer adapter.

httpsok.sh cannot be installed here (it needs the httpsok.com service), so these tests run the
adapter against an argv-recording stand-in on PATH (tests/renewer/standins/httpsok.sh) that follows
the client's documented behaviour: token from $HOME/.httpsok/token, ssl_certificate pairs found in
the nginx config, new certificate and key moved over those paths. The nginx config is a real one
rendered by stack/nginx.py (not started: only its text is scanned).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certloop.caches import Caches
from certloop.config import validate_model
from certloop.errors import ConfigError
from certloop.renewer import pipeline
from certloop.renewer.context import RenewalContext
from certloop.renewer.errors import NotDue, Unauthorized
from certloop.renewer.keystore import Keystore
from certloop.renewer.spec import CertificateSpec
from certloop.truststore import TrustStore
from stack.nginx import Nginx
from stack.process import free_port
from tests.renewer.standins.peers import recorded, standin_env
from tests.support.pki import Pki

TOKEN = "tok-1234"


def _setup(tmp_path: Path, pki: Pki, nginx: Nginx, monkeypatch: pytest.MonkeyPatch) -> tuple[CertificateSpec, Path]:
    record = standin_env(monkeypatch, tmp_path, pki)
    shadow = pki.leaf(["shop.example"], days=3).write(tmp_path / "httpsok", "shop")
    nginx.add_site(["shop.example"], shadow["fullchain"], shadow["key"], listen=[("127.0.0.1", free_port())])
    nginx.write_config()
    monkeypatch.setenv("CERTLOOP_STANDIN_NGINX_CONF", str(nginx.conf_path))
    monkeypatch.setenv("CERTLOOP_STANDIN_HTTPSOK_TOKEN", TOKEN)
    monkeypatch.setenv("HTTPSOK_TOKEN", TOKEN)
    spec = validate_model(CertificateSpec, {
        "id": "shop",
        "domains": ["shop.example"],
        "issuer": {"type": "httpsok", "token": "${HTTPSOK_TOKEN}",
                   "cert_path": str(shadow["fullchain"]), "key_path": str(shadow["key"])},
        "outputs": {"fullchain": str(tmp_path / "live" / "f.pem"), "key": str(tmp_path / "live" / "k.pem")},
    })
    return spec, record


def _ctx(tmp_path: Path) -> RenewalContext:
    return RenewalContext(tmp_path / "data", lambda: datetime.now(UTC), Keystore(b"h" * 32))


def test_httpsok_renews_the_pair_named_in_the_nginx_config(
    tmp_path: Path, pki: Pki, nginx: Nginx, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token goes to $HOME/.httpsok/token (0600, never argv); the new pair is picked up."""
    spec, record = _setup(tmp_path, pki, nginx, monkeypatch)
    ctx = _ctx(tmp_path)
    material = asyncio.run(pipeline.issue(spec, ctx))
    pipeline.validate(material, spec, now=datetime.now(UTC), trust=TrustStore.from_pem(pki.root_pem, Caches()))
    (call,) = recorded(record)
    home = ctx.data_dir / "issuers" / "httpsok" / "shop"
    assert call["argv"] == ["-m", "-r"] and call["home"] == str(home)
    token = home / ".httpsok" / "token"
    assert token.read_text().strip() == TOKEN and token.stat().st_mode & 0o777 == 0o600


def test_bad_token_is_unauthorized(tmp_path: Path, pki: Pki, nginx: Nginx, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpsok's exit 4 'Invalid token' becomes Unauthorized."""
    spec, _ = _setup(tmp_path, pki, nginx, monkeypatch)
    monkeypatch.setenv("HTTPSOK_TOKEN", "wrong")
    with pytest.raises(Unauthorized):
        asyncio.run(pipeline.issue(spec, _ctx(tmp_path)))


def test_nothing_written_is_not_due(tmp_path: Path, pki: Pki, nginx: Nginx, monkeypatch: pytest.MonkeyPatch) -> None:
    """When httpsok leaves the pair untouched, there is no new material: NotDue."""
    spec, _ = _setup(tmp_path, pki, nginx, monkeypatch)
    monkeypatch.setenv("CERTLOOP_STANDIN_HTTPSOK_ONLY", "/nonexistent")
    with pytest.raises(NotDue):
        asyncio.run(pipeline.issue(spec, _ctx(tmp_path)))


def test_httpsok_paths_must_not_be_outputs(tmp_path: Path) -> None:
    """httpsok overwrites in place, so its pair may not double as certloop's outputs."""
    doc = {
        "id": "shop", "domains": ["shop.example"],
        "issuer": {"type": "httpsok", "token": "t", "cert_path": "/etc/x/f.pem", "key_path": "/etc/x/k.pem"},
        "outputs": {"fullchain": "/etc/x/f.pem", "key": "/etc/x/other.key"},
    }
    with pytest.raises(ConfigError, match="must not be outputs"):
        validate_model(CertificateSpec, doc)
