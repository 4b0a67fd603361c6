"""End to end per issuer: nginx serves a certificate close to expiry -> issue -> validate -> deploy
(real `nginx -t` and `nginx -s reload`) -> nginx serves the new leaf.

Real peers: pebble (ACME server) resolving through pebble-challtestsrv, nginx serving the http-01
webroot and the TLS site, Debian's certbot and lego. acme.sh and httpsok.sh cannot be installed
here: their runs use the argv-recording stand-ins in tests/renewer/standins/ (minting from the test
CA), which is why their specs trust the test PKI's root instead of pebble's.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from certloop.config import validate_model
from certloop.renewer import install, pipeline
from certloop.renewer.errors import ValidationError
from certloop.renewer.spec import CertificateSpec
from tests.renewer.standins.peers import (
    DOMAIN,
    STANDINS,
    AcmeStack,
    acme_stack_fixture,  # noqa: F401  # fixture
    standin_env,
)
from tests.support.pki import Pki

RENEWAL_BUDGET_S = 10.0


def _served(stack: AcmeStack) -> str:
    return asyncio.run(install.served_fingerprint("127.0.0.1", stack.tls_port, DOMAIN, 5))


def _renew(stack: AcmeStack, spec: CertificateSpec) -> tuple[str, float]:
    """issue -> validate -> deploy; returns the new fingerprint and the seconds it took."""
    ctx = stack.context()
    started = time.monotonic()

    async def run() -> str:
        material = await pipeline.issue(spec, ctx)
        pipeline.validate(material, spec, now=ctx.clock())
        result = await install.deploy(material, spec, ctx)
        return result.fingerprint

    fingerprint = asyncio.run(run())
    return fingerprint, time.monotonic() - started


def _issuer(stack: AcmeStack, kind: str, tmp_path: Path) -> dict[str, Any]:
    pebble = {"directory": stack.pebble.directory_url, "ca_bundle": str(stack.pebble.ca_bundle_path)}
    if kind == "acme":
        return {"type": "acme", **pebble, "http01": {"webroot": str(stack.webroot)}}
    if kind == "certbot":
        return {"type": "certbot", **pebble, "webroot": str(stack.webroot)}
    if kind == "lego":
        return {"type": "lego", **pebble, "email": "ops@shop.example", "webroot": str(stack.webroot)}
    if kind == "command":  # a program that runs real certbot against pebble, writing where we say
        return {"type": "command", "argv": [sys.executable, str(STANDINS / "certbot_command.py"),
                                            pebble["directory"], pebble["ca_bundle"], str(stack.webroot)]}
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["acme", "certbot", "lego", "command"])
def test_renewal_against_pebble_and_nginx(acme_stack: AcmeStack, kind: str, tmp_path: Path) -> None:
    """The near-expiry leaf nginx serves is replaced by one pebble issued, proven served, old kept."""
    assert _served(acme_stack) == acme_stack.old.fingerprint
    spec = validate_model(CertificateSpec, acme_stack.spec_data(_issuer(acme_stack, kind, tmp_path)))
    fingerprint, seconds = _renew(acme_stack, spec)
    assert _served(acme_stack) == fingerprint != acme_stack.old.fingerprint
    prev = acme_stack.live["fullchain"].with_name(acme_stack.live["fullchain"].name + install.PREV_SUFFIX)
    assert prev.read_bytes() == acme_stack.old.fullchain_pem
    print(f"\nrenewal via {kind}: issue -> verified-served in {seconds:.2f}s")
    if kind == "acme":
        assert seconds < RENEWAL_BUDGET_S


def test_renewal_via_acmesh_standin(
    acme_stack: AcmeStack, tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """acme.sh (stand-in, see module doc) output goes through the same validate/deploy/verify."""
    standin_env(monkeypatch, tmp_path, pki)
    issuer = {"type": "acme.sh", "server": acme_stack.pebble.directory_url, "webroot": str(acme_stack.webroot)}
    root = pki.write_root(tmp_path / "test-root.pem")
    spec = validate_model(CertificateSpec, acme_stack.spec_data(issuer, trust_bundle=str(root)))
    fingerprint, _ = _renew(acme_stack, spec)
    assert _served(acme_stack) == fingerprint != acme_stack.old.fingerprint


def test_renewal_via_httpsok_standin(
    acme_stack: AcmeStack, tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpsok (stand-in, see module doc) renews its own pair named in the real nginx config; certloop
    picks it up and installs it to the serving site's files with verify and rollback."""
    standin_env(monkeypatch, tmp_path, pki)
    shadow = pki.leaf([DOMAIN], days=2).write(tmp_path / "httpsok", "shop")
    from stack.process import free_port

    acme_stack.nginx.add_site([DOMAIN], shadow["fullchain"], shadow["key"], listen=[("127.0.0.1", free_port())])
    acme_stack.nginx.reload()
    monkeypatch.setenv("CERTLOOP_STANDIN_NGINX_CONF", str(acme_stack.nginx.conf_path))
    monkeypatch.setenv("CERTLOOP_STANDIN_HTTPSOK_TOKEN", "tok")
    monkeypatch.setenv("CERTLOOP_STANDIN_HTTPSOK_ONLY", str(shadow["fullchain"]))
    token = tmp_path / "httpsok.token"
    token.write_text("tok\n")
    issuer = {"type": "httpsok", "token_file": str(token),
              "cert_path": str(shadow["fullchain"]), "key_path": str(shadow["key"])}
    root = pki.write_root(tmp_path / "test-root.pem")
    spec = validate_model(CertificateSpec, acme_stack.spec_data(issuer, trust_bundle=str(root)))
    fingerprint, _ = _renew(acme_stack, spec)
    assert _served(acme_stack) == fingerprint != acme_stack.old.fingerprint


def test_invalid_material_is_rejected_before_live_files_are_touched(
    acme_stack: AcmeStack, tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An issuer that returns a certificate for the wrong name: validate refuses it, the live files
    are byte-for-byte and mtime-identical, and nginx still serves the old leaf."""
    standin_env(monkeypatch, tmp_path, pki)
    seen = tmp_path / "env.json"
    issuer = {"type": "command", "argv": [sys.executable, str(STANDINS / "mint_command.py"), str(seen)]}
    spec = validate_model(CertificateSpec, acme_stack.spec_data(issuer, trust_bundle=None))
    wrong = validate_model(CertificateSpec, acme_stack.spec_data(issuer, domains=["other.example"]))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in acme_stack.live.values()}
    ctx = acme_stack.context()
    material = asyncio.run(pipeline.issue(wrong, ctx))
    with pytest.raises(ValidationError, match=r"does not cover shop\.example"):
        pipeline.validate(material, spec, now=datetime.now(UTC))
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in acme_stack.live.values()} == before
    assert _served(acme_stack) == acme_stack.old.fingerprint
