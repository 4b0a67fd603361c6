"""Issuers: one module each, one signature, one table.

``ISSUERS[type]`` holds the settings model and ``async issue(settings, request, ctx) -> IssuedMaterial``
(see :mod:`certloop.renewer.issuers.base`). Adding an issuer is one module plus one entry here and in
:data:`IssuerSettings`; its settings model derives from ``IssuerSettingsBase``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from certloop.renewer.issuers import acme_client, acmesh, certbot, command, httpsok, lego
from certloop.renewer.issuers.base import IssuerEntry

__all__ = ["ISSUERS", "IssuerSettings"]

ISSUERS: dict[str, IssuerEntry[Any]] = {
    "acme": IssuerEntry(acme_client.AcmeSettings, acme_client.issue),
    "certbot": IssuerEntry(certbot.CertbotSettings, certbot.issue),
    "lego": IssuerEntry(lego.LegoSettings, lego.issue),
    "acme.sh": IssuerEntry(acmesh.AcmeShSettings, acmesh.issue),
    "httpsok": IssuerEntry(httpsok.HttpsokSettings, httpsok.issue),
    "command": IssuerEntry(command.CommandSettings, command.issue),
}

IssuerSettings = Annotated[
    acme_client.AcmeSettings
    | certbot.CertbotSettings
    | lego.LegoSettings
    | acmesh.AcmeShSettings
    | httpsok.HttpsokSettings
    | command.CommandSettings,
    Field(discriminator="type"),
]
