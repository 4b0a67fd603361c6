"""Run the httpsok.sh client (httpsok.com) and pick up the certificate it writes.

    issuer:
      type: httpsok
      token_file: /etc/certloop/httpsok.token   # or token: ${HTTPSOK_TOKEN}
      cert_path: /etc/nginx/httpsok/shop.pem    # where httpsok writes (its nginx config names them)
      key_path: /etc/nginx/httpsok/shop.key
      executable: /root/.httpsok/httpsok.sh

What httpsok needs and does (its documented behaviour, httpsok.sh 1.x):

- a token from the httpsok console; httpsok.sh reads it from ``$HOME/.httpsok/token``. certloop
  writes it there (0600) with ``HOME`` set to the issuer's home under the data dir, so the token
  never appears in an argv.
- it finds nginx (``nginx`` on PATH or the running master), takes the config from the master's
  ``-c`` or ``nginx -t``, expands its includes and sends it to the httpsok service, which finds the
  ``ssl_certificate``/``ssl_certificate_key`` pairs. Domain validation is by a DNS CNAME set up once
  in the httpsok console.
- for each pair it downloads the new certificate and key and moves them over those paths, then
  runs ``nginx -t`` and ``nginx -s reload`` itself.

Because httpsok overwrites in place, ``cert_path``/``key_path`` must be a pair that only httpsok
uses (e.g. an nginx ``server`` block that is not the one serving traffic): certloop reads them,
validates, and installs to ``outputs`` with its own snapshot, verify and rollback; a cert_path or
key_path equal to an output is rejected when the config loads (:meth:`HttpsokSettings.check_request`).
Unchanged files after a run mean httpsok found nothing due (NotDue). Exit 4 is an invalid/missing
token (Unauthorized) or no certificate found.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import model_validator

from certloop.config import SECRET, resolve_secret
from certloop.renewer.errors import NotDue, Unauthorized
from certloop.renewer.issuance import IssueRequest
from certloop.renewer.issuers.base import IssueContext, IssuerSettingsBase, classify_failure
from certloop.renewer.keystore import write_private
from certloop.renewer.material import IssuedMaterial
from certloop.renewer.programs import run_program

__all__ = ["RUN_ARGS", "HttpsokSettings", "issue"]

RUN_ARGS = ("-m", "-r")  # what httpsok's own cron entry runs: crontab mode, run once
_EXIT_TOKEN = 4


class HttpsokSettings(IssuerSettingsBase):
    type: Literal["httpsok"]
    token: Annotated[str | None, SECRET] = None
    token_file: Path | None = None
    cert_path: Path
    key_path: Path
    executable: str = "httpsok.sh"

    @model_validator(mode="after")
    def _token(self) -> HttpsokSettings:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("set exactly one of token or token_file")
        return self

    def ca_directory(self) -> str:
        return ""  # the httpsok service picks the CA and talks to it; certloop never sees which

    def check_request(self, request: IssueRequest) -> None:
        theirs = {str(self.cert_path), str(self.key_path)}
        ours = {str(p) for p in request.outputs}
        if theirs & ours:
            raise ValueError(
                "httpsok's cert_path/key_path must not be outputs: httpsok overwrites them in place, "
                "certloop installs to outputs with a rollback copy"
            )


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


async def issue(settings: HttpsokSettings, request: IssueRequest, ctx: IssueContext) -> IssuedMaterial:
    """Run ``httpsok.sh -m -r`` with HOME in our data dir; read the pair it (re)wrote."""
    token = resolve_secret(settings.token, settings.token_file, field="issuer.token")
    write_private(ctx.home / ".httpsok" / "token", token.encode() + b"\n")
    before = (_digest(settings.cert_path), _digest(settings.key_path))
    done = await run_program(
        [settings.executable, *RUN_ARGS], time_limit=ctx.timeout, env={"HOME": str(ctx.home)},
        cwd=ctx.staging, what="httpsok",
    )
    text = done.stdout + done.stderr
    if done.returncode == _EXIT_TOKEN and "token" in text.lower():
        raise Unauthorized("httpsok rejected the token (invalid or missing)")
    if done.returncode != 0:
        raise classify_failure("httpsok", done)
    if (_digest(settings.cert_path), _digest(settings.key_path)) == before:
        raise NotDue("httpsok did not write a new certificate (nothing due, or not validated yet)")
    return IssuedMaterial.from_files(key=settings.key_path, cert=settings.cert_path)
