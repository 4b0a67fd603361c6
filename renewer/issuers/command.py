"""Any program that writes a certificate and key to the paths it is given in its environment.

    issuer: {type: command, argv: ["/usr/local/bin/mint", "--profile", "web"]}

The program runs without a shell, in a fresh staging directory, and gets:

    CERTLOOP_CERT_PATH       where to write the leaf (optionally followed by the chain)
    CERTLOOP_FULLCHAIN_PATH  or write leaf + chain here instead
    CERTLOOP_KEY_PATH        where to write the private key (PEM)
    CERTLOOP_DOMAINS         the names to request, comma-separated
    CERTLOOP_CERTIFICATE_ID  the certificate id
    CERTLOOP_KEY_TYPE        ec256 | ec384 | rsa2048 | rsa3072 | rsa4096

Exit 0 with the key and a certificate (or full chain) written; anything else is a failure.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from certloop.config import VERBATIM
from certloop.renewer.issuance import IssueRequest
from certloop.renewer.issuers.base import IssueContext, IssuerSettingsBase, classify_failure
from certloop.renewer.material import IssuedMaterial
from certloop.renewer.programs import run_program

__all__ = ["CommandSettings", "issue"]


class CommandSettings(IssuerSettingsBase):
    type: Literal["command"]
    argv: Annotated[list[str], VERBATIM] = Field(min_length=1)

    def ca_directory(self) -> str:
        return ""  # whatever CA the program uses is its own business


async def issue(settings: CommandSettings, request: IssueRequest, ctx: IssueContext) -> IssuedMaterial:
    """Run the program and read what it wrote into the staging directory."""
    paths = {
        "cert": ctx.staging / "cert.pem",
        "fullchain": ctx.staging / "fullchain.pem",
        "key": ctx.staging / "key.pem",
    }
    env = {
        "CERTLOOP_CERT_PATH": str(paths["cert"]),
        "CERTLOOP_FULLCHAIN_PATH": str(paths["fullchain"]),
        "CERTLOOP_KEY_PATH": str(paths["key"]),
        "CERTLOOP_DOMAINS": ",".join(request.domains),
        "CERTLOOP_CERTIFICATE_ID": request.certificate_id,
        "CERTLOOP_KEY_TYPE": request.key_type,
    }
    done = await run_program(settings.argv, time_limit=ctx.timeout, env=env, cwd=ctx.staging, what="command")
    if done.returncode != 0:
        raise classify_failure(settings.argv[0], done)
    return IssuedMaterial.from_files(key=paths["key"], cert=paths["cert"], fullchain=paths["fullchain"])
