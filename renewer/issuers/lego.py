"""Drive Debian's ``lego`` (4.x) as a subprocess: ``lego ... run`` into a staging ``--path``.

    issuer: {type: lego, directory: https://..., email: ..., ca_bundle: ..., webroot: /var/www/acme}
    # or http_port: 8080 for lego's own listener
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

__all__ = ["LegoSettings", "issue"]


class LegoSettings(StrictModel):
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


async def issue(settings: LegoSettings, spec: CertificateSpec, ctx: IssueContext) -> IssuedMaterial:
    """Not implemented yet."""
    raise IssuanceError("lego issuer not implemented yet")
