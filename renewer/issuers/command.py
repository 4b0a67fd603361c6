"""Any program that writes a certificate and key to the paths it is given in its environment.

    issuer: {type: command, argv: ["/usr/local/bin/mint", "--profile", "web"]}

The program gets ``CERTLOOP_CERT_PATH``, ``CERTLOOP_KEY_PATH``, ``CERTLOOP_FULLCHAIN_PATH``,
``CERTLOOP_DOMAINS`` (comma-separated) and ``CERTLOOP_CERTIFICATE_ID``; it must write the key and
the certificate (or the full chain) there and exit 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from renewer.errors import IssuanceError
from renewer.issuers.base import IssueContext, IssuedMaterial

if TYPE_CHECKING:
    from renewer.spec import CertificateSpec

from certloop.config import StrictModel

__all__ = ["CommandSettings", "issue"]


class CommandSettings(StrictModel):
    type: Literal["command"]
    argv: list[str] = Field(min_length=1)


async def issue(settings: CommandSettings, spec: CertificateSpec, ctx: IssueContext) -> IssuedMaterial:
    """Not implemented yet."""
    raise IssuanceError("command issuer not implemented yet")
