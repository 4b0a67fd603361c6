"""Drive Debian's ``certbot certonly`` as a subprocess, with its own config/work/logs directories.

    issuer:
      type: certbot
      directory: https://acme-v02.api.letsencrypt.org/directory
      email: ops@example.com          # else --register-unsafely-without-email
      ca_bundle: /etc/ssl/pebble.pem  # REQUESTS_CA_BUNDLE, for a private ACME server
      webroot: /var/www/acme          # --webroot -w ...; or http01_port: 8080 for --standalone

certbot keeps its state in ``<home>/config`` (account, lineage), ``<home>/work`` and ``<home>/logs``.
It runs without installer or hooks, so it never touches live files: we read the lineage from
``config/live/<id>/`` into memory and delete the lineage (the account stays), so the next run
issues afresh instead of certbot deciding the certificate is "not yet due". ``--no-autorenew``
keeps a system certbot timer away from it, ``--no-random-sleep-on-renew`` is passed as asked of
every unattended certbot run (it only affects ``renew``; certloop decides when to renew).

When the CA no longer knows certbot's account (``accountDoesNotExist``: a CA reset, a deactivated
account), ``config/accounts`` is removed and certbot run once more in the same attempt, which
registers a new account (a WARNING says so).
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

__all__ = ["CertbotSettings", "build_argv", "issue"]


class CertbotSettings(IssuerSettingsBase):
    type: Literal["certbot"]
    directory: str
    email: str | None = None
    ca_bundle: Path | None = None
    webroot: Path | None = None
    http01_port: int | None = None
    executable: str = "certbot"

    @model_validator(mode="after")
    def _one(self) -> CertbotSettings:
        if (self.webroot is None) == (self.http01_port is None):
            raise ValueError("set exactly one of webroot or http01_port")
        return self

    def ca_directory(self) -> str:
        return self.directory


_KEY_ARGS = {
    "ec256": ["--key-type", "ecdsa", "--elliptic-curve", "secp256r1"],
    "ec384": ["--key-type", "ecdsa", "--elliptic-curve", "secp384r1"],
    "rsa2048": ["--key-type", "rsa", "--rsa-key-size", "2048"],
    "rsa3072": ["--key-type", "rsa", "--rsa-key-size", "3072"],
    "rsa4096": ["--key-type", "rsa", "--rsa-key-size", "4096"],
}


def build_argv(settings: CertbotSettings, request: IssueRequest, home: Path, time_limit: float) -> list[str]:
    """The exact ``certbot certonly`` argv (pure, tested on its own)."""
    argv = [
        settings.executable, "certonly",
        "--non-interactive", "--agree-tos", "--no-random-sleep-on-renew", "--no-autorenew",
        "--force-renewal", "--no-eff-email",
        "--config-dir", str(home / "config"),
        "--work-dir", str(home / "work"),
        "--logs-dir", str(home / "logs"),
        "--server", settings.directory,
        "--cert-name", request.certificate_id,
        "--issuance-timeout", str(max(int(time_limit), 1)),
        *_KEY_ARGS[request.key_type],
    ]
    argv += ["--email", settings.email] if settings.email else ["--register-unsafely-without-email"]
    if settings.webroot is not None:
        argv += ["--webroot", "--webroot-path", str(settings.webroot)]
    else:
        argv += ["--standalone", "--http-01-port", str(settings.http01_port)]
    for domain in request.domains:
        argv += ["--domain", domain]
    return argv


def _forget_lineage(home: Path, cert_name: str) -> None:
    config = home / "config"
    for path in (config / "live" / cert_name, config / "archive" / cert_name):
        shutil.rmtree(path, ignore_errors=True)
    (config / "renewal" / f"{cert_name}.conf").unlink(missing_ok=True)


_DOMAIN_LINE = re.compile(r"^\s*Domain:\s*(\S+)", re.MULTILINE)
_ACCOUNT_GONE = "accountdoesnotexist"
log = logging.getLogger(__name__)


def _account_gone(output: str, home: Path) -> bool:
    """Did the CA answer accountDoesNotExist? certbot 2.1 (Debian 12) may print only an AttributeError
    raised while it reports that error, so its own log's tail is read too."""
    if _ACCOUNT_GONE in output.lower():
        return True
    try:
        with (home / "logs" / "letsencrypt.log").open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(fh.tell() - 65536, 0))
            return _ACCOUNT_GONE in fh.read().decode(errors="replace").lower()
    except OSError:
        return False


async def issue(settings: CertbotSettings, request: IssueRequest, ctx: IssueContext) -> IssuedMaterial:
    """Run certbot certonly; read ``live/<id>/`` into memory; leave only the account behind."""
    _forget_lineage(ctx.home, request.certificate_id)  # a lineage left by a crash must not make certbot skip
    env = {"REQUESTS_CA_BUNDLE": str(settings.ca_bundle)} if settings.ca_bundle else {}
    argv = build_argv(settings, request, ctx.home, ctx.timeout)
    try:
        done = await run_program(argv, time_limit=ctx.timeout, env=env, cwd=ctx.staging, what="certbot",
                                 umask=WORLD_READABLE_UMASK)  # its http-01 files: for the web server
        if done.returncode != 0 and _account_gone(done.stdout + done.stderr, ctx.home):
            log.warning("certbot's ACME account is unknown to %s (accountDoesNotExist): removing %s, "
                        "registering a new account and retrying once", settings.directory,
                        ctx.home / "config" / "accounts")
            shutil.rmtree(ctx.home / "config" / "accounts", ignore_errors=True)
            _forget_lineage(ctx.home, request.certificate_id)
            done = await run_program(argv, time_limit=ctx.timeout, env=env, cwd=ctx.staging, what="certbot",
                                     umask=WORLD_READABLE_UMASK)
        if done.returncode != 0:
            text = done.stdout + done.stderr
            failed = _DOMAIN_LINE.search(text) if "Some challenges have failed" in text else None
            raise classify_failure("certbot", done, failed_domain=failed.group(1) if failed else None)
        live = ctx.home / "config" / "live" / request.certificate_id
        return IssuedMaterial.from_files(
            key=live / "privkey.pem", cert=live / "cert.pem", chain=live / "chain.pem"
        )
    finally:
        _forget_lineage(ctx.home, request.certificate_id)  # the key must not linger in plaintext
