"""The built-in ACME issuer (RFC 8555) on certbot's ``acme`` library.

Settings (``issuer: {type: acme, ...}``):

    directory: https://acme-v02.api.letsencrypt.org/directory
    ca_bundle: /etc/ssl/pebble.pem     # trust for the ACME server's own HTTPS (pebble, step-ca)
    email: ops@example.com
    eab: {kid: ..., hmac_key: ${EAB_HMAC}}   # External Account Binding (ZeroSSL, Google)
    http01: {webroot: /var/www/acme}  # or {listen: "0.0.0.0:80"} for a standalone listener
    dns01: {hook: [...], cleanup: [...]}     # exactly one of http01 / dns01
    poll_timeout: 90s
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from renewer.errors import IssuanceError
from renewer.issuers.base import IssueContext, IssuedMaterial

if TYPE_CHECKING:
    from renewer.spec import CertificateSpec

from certloop.config import Duration, StrictModel

__all__ = ["AcmeSettings", "Dns01Hook", "Eab", "Http01", "issue"]


class Eab(StrictModel):
    """External Account Binding: key id and the base64url HMAC key (``${ENV}`` or ``hmac_key_file``)."""

    kid: str
    hmac_key: str | None = None
    hmac_key_file: Path | None = None


class Http01(StrictModel):
    """http-01: write tokens under ``<webroot>/.well-known/acme-challenge/`` or answer on ``listen``."""

    webroot: Path | None = None
    listen: str | None = Field(default=None, description='standalone listener "host:port"')

    @model_validator(mode="after")
    def _one(self) -> Http01:
        if (self.webroot is None) == (self.listen is None):
            raise ValueError("set exactly one of webroot or listen")
        return self


class Dns01Hook(StrictModel):
    """dns-01 through commands (argv, no shell). The record is passed in the environment:
    ``CERTLOOP_DNS_RECORD_NAME`` (``_acme-challenge.<domain>.``), ``CERTLOOP_DNS_RECORD_VALUE``,
    ``CERTLOOP_DOMAIN``. ``hook`` publishes, ``cleanup`` removes."""

    hook: list[str] = Field(min_length=1)
    cleanup: list[str] | None = None
    timeout: Duration = timedelta(seconds=60)


class AcmeSettings(StrictModel):
    type: Literal["acme"]
    directory: str = Field(description="ACME directory URL")
    ca_bundle: Path | None = None
    email: str | None = None
    eab: Eab | None = None
    http01: Http01 | None = None
    dns01: Dns01Hook | None = None
    poll_timeout: Duration = timedelta(seconds=90)

    @model_validator(mode="after")
    def _one_challenge(self) -> AcmeSettings:
        if (self.http01 is None) == (self.dns01 is None):
            raise ValueError("set exactly one of http01 or dns01")
        return self


async def issue(settings: AcmeSettings, spec: CertificateSpec, ctx: IssueContext) -> IssuedMaterial:
    """Not implemented yet."""
    raise IssuanceError("acme_client issuer not implemented yet")
