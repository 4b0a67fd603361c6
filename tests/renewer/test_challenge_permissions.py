"""http-01 through a webroot under the shipped systemd unit's ``UMask=0027``, with nginx's workers
running as another user (``nobody``), as a packaged nginx does: the challenge directories the issuer
creates must be 0755 and the token files 0644, or nginx answers 403 and the CA fails the challenge.

Real pebble, real nginx (workers as ``nobody``), real lego and certbot; the built-in client runs
in-process under the umask.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from certloop.config import validate_model
from certloop.renewer import pipeline
from certloop.renewer.spec import CertificateSpec
from tests.renewer.standins.peers import AcmeStack, acme_stack_fixture  # noqa: F401  # fixture


@pytest.fixture
def webroot_as_nobody(acme_stack: AcmeStack) -> Iterator[Path]:
    """Point nginx's http-01 site at a fresh world-traversable webroot without ``.well-known`` (the
    issuer must create it) and reload nginx with its workers running as ``nobody``."""
    web = Path(tempfile.mkdtemp(prefix="certloop-webroot-"))
    os.chmod(web, 0o755)  # noqa: S103 - the web server's user must traverse the webroot, as in production
    nginx = acme_stack.nginx
    site = next(s for s in nginx.sites if s.webroot is not None)
    nginx.remove_site(site)
    nginx.add_http_site(site.server_names, web, site.listen, default=site.default)
    shutil.rmtree(web / ".well-known")
    nginx.worker_user = "nobody nogroup"
    nginx.reload()
    uids = {Path(f"/proc/{pid}/status").read_text().split("\nUid:\t")[1].split()[0] for pid in nginx.worker_pids()}
    assert uids == {str(65534)}, uids  # the workers really are `nobody`
    try:
        yield web
    finally:
        shutil.rmtree(web, ignore_errors=True)


def _issuer(kind: str, stack: AcmeStack, web: Path) -> dict[str, object]:
    common = {"directory": stack.pebble.directory_url, "ca_bundle": str(stack.pebble.ca_bundle_path),
              "email": "ops@shop.example"}
    if kind == "acme":
        return {"type": "acme", **common, "http01": {"webroot": str(web)}, "poll_timeout": "20s"}
    return {"type": kind, **common, "webroot": str(web)}


@pytest.mark.parametrize("kind", ["acme", "lego", "certbot"])
def test_webroot_http01_works_under_umask_0027_with_nginx_workers_as_nobody(
    acme_stack: AcmeStack, webroot_as_nobody: Path, kind: str
) -> None:
    """The issuance succeeds (pebble fetched the token through nginx's `nobody` workers), and the
    challenge directories the issuer created are 0755 (certbot removes its own afterwards)."""
    spec = validate_model(CertificateSpec, acme_stack.spec_data(_issuer(kind, acme_stack, webroot_as_nobody)))
    old = os.umask(0o027)
    try:
        material = asyncio.run(pipeline.issue(spec, acme_stack.context()))
    finally:
        os.umask(old)
    assert material.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    if kind == "certbot":
        return  # certbot removes the directories it created; the issuance is the proof
    for directory in (webroot_as_nobody / ".well-known", webroot_as_nobody / ".well-known" / "acme-challenge"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755, directory
