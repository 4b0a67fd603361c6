"""Run the httpsok.sh client and pick up the certificate it writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from renewer.errors import IssuanceError
from renewer.issuers.base import IssueContext, IssuedMaterial

if TYPE_CHECKING:
    from renewer.spec import CertificateSpec

from certloop.config import StrictModel

__all__ = ["HttpsokSettings", "issue"]


class HttpsokSettings(StrictModel):
    type: Literal["httpsok"]
    token: str | None = None
    token_file: Path | None = None
    cert_path: Path
    key_path: Path
    executable: str = "httpsok.sh"


async def issue(settings: HttpsokSettings, spec: CertificateSpec, ctx: IssueContext) -> IssuedMaterial:
    """Not implemented yet."""
    raise IssuanceError("httpsok issuer not implemented yet")
