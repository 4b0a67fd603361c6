"""Drive acme.sh as a subprocess with its own ``--home``/``--config-home``, output into staging.

Exit codes are the contract: 0 issued, 2 skipped (not due), 3 manual DNS pending, anything else failed.
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

__all__ = ["AcmeShSettings", "issue"]


class AcmeShSettings(StrictModel):
    type: Literal["acme.sh"]
    server: str
    email: str | None = None
    ca_bundle: Path | None = None
    webroot: Path | None = None
    standalone_port: int | None = None
    dns: str | None = None
    executable: str = "acme.sh"

    @model_validator(mode="after")
    def _one(self) -> AcmeShSettings:
        modes = [self.webroot is not None, self.standalone_port is not None, self.dns is not None]
        if sum(modes) != 1:
            raise ValueError("set exactly one of webroot, standalone_port or dns")
        return self


async def issue(settings: AcmeShSettings, spec: CertificateSpec, ctx: IssueContext) -> IssuedMaterial:
    """Not implemented yet."""
    raise IssuanceError("acmesh issuer not implemented yet")
