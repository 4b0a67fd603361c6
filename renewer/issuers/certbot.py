"""Drive Debian's ``certbot certonly`` as a subprocess, with its own config/work/logs dirs.

    issuer: {type: certbot, directory: https://..., email: ..., ca_bundle: ..., webroot: /var/www/acme}
    # or http01_port: 8080 for --standalone

certbot writes into ``<home>/config/live/<id>/``; we read the result into memory and never let it
touch live files (no installer, no deploy hooks).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import model_validator

from renewer.errors import IssuanceError
from renewer.issuers.base import IssueContext, IssuedMaterial

if TYPE_CHECKING:
    from renewer.spec import CertificateSpec

from certloop.config import StrictModel

__all__ = ["CertbotSettings", "issue"]


class CertbotSettings(StrictModel):
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


async def issue(settings: CertbotSettings, spec: CertificateSpec, ctx: IssueContext) -> IssuedMaterial:
    """Not implemented yet."""
    raise IssuanceError("certbot issuer not implemented yet")
