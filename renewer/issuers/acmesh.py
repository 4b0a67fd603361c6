"""Drive acme.sh as a subprocess: ``acme.sh --issue`` with its own homes, output into staging.

    issuer:
      type: acme.sh
      server: https://acme-v02.api.letsencrypt.org/directory   # or a short name (letsencrypt, zerossl)
      webroot: /var/www/acme      # -w; or standalone_port: 8080 (--standalone --httpport);
                                  # or dns: dns_cf (its DNS API; credentials from the renewer's env)
      ca_bundle: /etc/ssl/pebble.pem   # --ca-bundle, for a private ACME server
      executable: /root/.acme.sh/acme.sh

``--home`` and ``--config-home`` (account) are the issuer's home under the data dir;
``--cert-home`` is this attempt's staging dir, so acme.sh starts without a record of earlier
certificates and the ``--cert-file``/``--key-file``/``--fullchain-file`` copies land in staging,
never on live files. Exit codes are acme.sh's contract: 0 issued, 2 skipped (not due -> NotDue),
3 DNS manual mode waiting for a TXT record (-> PendingManual), anything else failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from certloop.renewer.errors import NotDue, PendingManual
from certloop.renewer.issuance import IssueRequest
from certloop.renewer.issuers.base import WORLD_READABLE_UMASK, IssueContext, IssuerSettingsBase, classify_failure
from certloop.renewer.material import IssuedMaterial
from certloop.renewer.programs import run_program

__all__ = ["EXIT_DNS_MANUAL", "EXIT_RENEW_SKIP", "AcmeShSettings", "build_argv", "issue"]

EXIT_RENEW_SKIP = 2
EXIT_DNS_MANUAL = 3

_KEYLENGTH = {"ec256": "ec-256", "ec384": "ec-384", "rsa2048": "2048", "rsa3072": "3072", "rsa4096": "4096"}


class AcmeShSettings(IssuerSettingsBase):
    type: Literal["acme.sh"]
    server: str
    ca_bundle: Path | None = None
    webroot: Path | None = None
    standalone_port: int | None = None
    dns: str | None = Field(default=None, pattern=r"^dns_[A-Za-z0-9_]+$")
    executable: str = "acme.sh"

    @model_validator(mode="after")
    def _one(self) -> AcmeShSettings:
        modes = [self.webroot is not None, self.standalone_port is not None, self.dns is not None]
        if sum(modes) != 1:
            raise ValueError("set exactly one of webroot, standalone_port or dns")
        return self

    def ca_directory(self) -> str:
        return self.server  # a directory URL or acme.sh's short name for a CA (letsencrypt, zerossl)


def _outputs(staging: Path) -> dict[str, Path]:
    return {
        "cert": staging / "cert.pem",
        "key": staging / "key.pem",
        "ca": staging / "ca.pem",
        "fullchain": staging / "fullchain.pem",
    }


def build_argv(settings: AcmeShSettings, request: IssueRequest, home: Path, staging: Path) -> list[str]:
    """The exact acme.sh argv (pure, tested on its own)."""
    out = _outputs(staging)
    argv = [
        settings.executable, "--issue",
        "--home", str(home),
        "--config-home", str(home / "config"),
        "--cert-home", str(staging / "certs"),
        "--server", settings.server,
        "--keylength", _KEYLENGTH[request.key_type],
    ]
    for domain in request.domains:
        argv += ["-d", domain]
    if settings.webroot is not None:
        argv += ["-w", str(settings.webroot)]
    elif settings.standalone_port is not None:
        argv += ["--standalone", "--httpport", str(settings.standalone_port)]
    else:
        assert settings.dns is not None
        argv += ["--dns", settings.dns]
    if settings.ca_bundle is not None:
        argv += ["--ca-bundle", str(settings.ca_bundle)]
    argv += [
        "--cert-file", str(out["cert"]),
        "--key-file", str(out["key"]),
        "--ca-file", str(out["ca"]),
        "--fullchain-file", str(out["fullchain"]),
    ]
    return argv


async def issue(settings: AcmeShSettings, request: IssueRequest, ctx: IssueContext) -> IssuedMaterial:
    """Run ``acme.sh --issue``; map its exit code; read the copies it wrote into staging."""
    argv = build_argv(settings, request, ctx.home, ctx.staging)
    done = await run_program(argv, time_limit=ctx.timeout, cwd=ctx.staging, what="acme.sh",
                             umask=WORLD_READABLE_UMASK)  # its http-01 files: for the web server
    if done.returncode == EXIT_RENEW_SKIP:
        raise NotDue("acme.sh skipped: it considers the certificate not due")
    if done.returncode == EXIT_DNS_MANUAL:
        raise PendingManual("acme.sh waits for the DNS TXT record to be added by hand (manual DNS mode)")
    if done.returncode != 0:
        raise classify_failure("acme.sh", done)
    out = _outputs(ctx.staging)
    return IssuedMaterial.from_files(key=out["key"], cert=out["cert"], chain=out["ca"], fullchain=out["fullchain"])
