"""Drive Debian's ``lego`` (4.x) as a subprocess: ``lego [global flags] run``.

    issuer:
      type: lego
      directory: https://acme-v02.api.letsencrypt.org/directory
      email: ops@example.com
      ca_bundle: /etc/ssl/pebble.pem     # LEGO_CA_CERTIFICATES, for a private ACME server
      webroot: /var/www/acme             # --http --http.webroot; or http_port: 8080 (--http.port :8080)

``--path`` is the issuer's home under the data dir (lego keeps its account there); lego writes
``certificates/<domain>.crt`` (leaf + issuer bundle) and ``.key``, which we read into memory and
delete. We always use ``run`` (certloop decides when to renew), so ``renew``'s
``--no-random-sleep`` does not apply. lego's key types are ec256, ec384, rsa2048, rsa4096 (no
rsa3072: :meth:`LegoSettings.check_request` rejects such a spec when the config loads).

lego keeps its account under ``<home>/accounts/``; when the CA no longer knows it
(``accountDoesNotExist``: a CA reset, a deactivated account), lego would fail with it on every run:
the accounts directory is removed and lego run once more in the same attempt, which registers a new
account (a WARNING says so).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from certloop.renewer.issuance import IssueRequest
from certloop.renewer.issuers.base import WORLD_READABLE_UMASK, IssueContext, IssuerSettingsBase, classify_failure
from certloop.renewer.material import IssuedMaterial
from certloop.renewer.programs import run_program

__all__ = ["KEY_TYPES", "LegoSettings", "build_argv", "issue"]

log = logging.getLogger(__name__)
_ACCOUNT_GONE = "urn:ietf:params:acme:error:accountdoesnotexist"

KEY_TYPES = frozenset({"ec256", "ec384", "rsa2048", "rsa4096"})


class LegoSettings(IssuerSettingsBase):
    type: Literal["lego"]
    directory: str
    email: str
    ca_bundle: Path | None = None
    webroot: Path | None = None
    http_port: int | None = None
    executable: str = "lego"

    @model_validator(mode="after")
    def _one(self) -> LegoSettings:
        if (self.webroot is None) == (self.http_port is None):
            raise ValueError("set exactly one of webroot or http_port")
        return self

    def ca_directory(self) -> str:
        return self.directory

    def check_request(self, request: IssueRequest) -> None:
        if request.key_type not in KEY_TYPES:
            raise ValueError(f"lego cannot issue key_type {request.key_type} (it supports {sorted(KEY_TYPES)})")


def build_argv(settings: LegoSettings, request: IssueRequest, home: Path, time_limit: float) -> list[str]:
    """The exact lego argv (pure, tested on its own): global flags first, then ``run``."""
    argv = [
        settings.executable,
        "--accept-tos",
        "--email", settings.email,
        "--server", settings.directory,
        "--path", str(home),
        "--key-type", request.key_type,
        "--cert.timeout", str(max(int(time_limit), 1)),
        "--http",
    ]
    if settings.webroot is not None:
        argv += ["--http.webroot", str(settings.webroot)]
    else:
        argv += ["--http.port", f":{settings.http_port}"]
    for domain in request.domains:
        argv += ["--domains", domain]
    return [*argv, "run"]


def _file_stem(domain: str) -> str:
    """lego's file name for a domain: ``*`` becomes ``_`` (``*.shop.example`` -> ``_.shop.example``)."""
    return domain.replace("*", "_")


_FAILED_DOMAIN = re.compile(r"^\[([^\]\s]+)\]\s+acme:", re.MULTILINE)


async def issue(settings: LegoSettings, request: IssueRequest, ctx: IssueContext) -> IssuedMaterial:
    """Run ``lego ... run``; read ``certificates/<first domain>.{crt,key}``; delete them."""
    env = {"LEGO_CA_CERTIFICATES": str(settings.ca_bundle)} if settings.ca_bundle else {}
    argv = build_argv(settings, request, ctx.home, ctx.timeout)
    certs = ctx.home / "certificates"
    stem = _file_stem(request.domains[0])
    produced = [certs / f"{stem}{ext}" for ext in (".crt", ".key", ".issuer.crt", ".json", ".pem")]
    for path in produced:
        path.unlink(missing_ok=True)
    try:
        done = await run_program(argv, time_limit=ctx.timeout, env=env, cwd=ctx.staging, what="lego",
                                 umask=WORLD_READABLE_UMASK)  # its http-01 files: for the web server
        if done.returncode != 0 and _ACCOUNT_GONE in (done.stdout + done.stderr).lower():
            log.warning("lego's ACME account for %s is unknown to %s (accountDoesNotExist): removing %s, "
                        "registering a new account and retrying once", settings.email, settings.directory,
                        ctx.home / "accounts")
            shutil.rmtree(ctx.home / "accounts", ignore_errors=True)
            done = await run_program(argv, time_limit=ctx.timeout, env=env, cwd=ctx.staging, what="lego",
                                     umask=WORLD_READABLE_UMASK)
        if done.returncode != 0:
            failed = _FAILED_DOMAIN.search(done.stdout + done.stderr)
            raise classify_failure("lego", done, failed_domain=failed.group(1) if failed else None)
        return IssuedMaterial.from_files(key=certs / f"{stem}.key", cert=certs / f"{stem}.crt")
    finally:
        for path in produced:  # the key must not linger in plaintext
            path.unlink(missing_ok=True)
