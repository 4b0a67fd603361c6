"""The certbot issuer drives Debian's real certbot against a real pebble, http-01 via nginx's webroot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from certloop.config import validate_model
from certloop.renewer import pipeline
from certloop.renewer.errors import ChallengeFailed, ConnectionFailed
from certloop.renewer.issuers import certbot
from certloop.renewer.spec import CertificateSpec
from stack.process import free_port
from tests.renewer.standins.peers import AcmeStack, acme_stack_fixture  # noqa: F401  # fixture


def _issuer(stack: AcmeStack) -> dict[str, object]:
    return {
        "type": "certbot",
        "directory": stack.pebble.directory_url,
        "ca_bundle": str(stack.pebble.ca_bundle_path),
        "email": "ops@shop.example",
        "webroot": str(stack.webroot),
    }


def test_argv_follows_certbots_documented_flags(acme_stack: AcmeStack) -> None:
    """certonly, unattended, own dirs under the data dir, key type mapped, one --domain per name."""
    spec = validate_model(CertificateSpec, acme_stack.spec_data(_issuer(acme_stack), key_type="ec384"))
    assert isinstance(spec.issuer, certbot.CertbotSettings)
    argv = certbot.build_argv(spec.issuer, spec.issue_request, acme_stack.data_dir / "h", 120)
    assert argv[:2] == ["certbot", "certonly"]
    for flag in ("--non-interactive", "--agree-tos", "--no-random-sleep-on-renew", "--webroot"):
        assert flag in argv
    assert argv[argv.index("--config-dir") + 1] == str(acme_stack.data_dir / "h" / "config")
    assert argv[argv.index("--elliptic-curve") + 1] == "secp384r1"
    assert argv[argv.index("--cert-name") + 1] == "shop"
    assert argv[-2:] == ["--domain", "shop.example"]


def test_certbot_issues_from_pebble_and_leaves_no_key_behind(acme_stack: AcmeStack) -> None:
    """Real certbot gets a certificate from pebble; we read it into memory and remove the lineage."""
    spec = validate_model(CertificateSpec, acme_stack.spec_data(_issuer(acme_stack)))
    ctx = acme_stack.context()
    material = asyncio.run(pipeline.issue(spec, ctx))
    pipeline.validate(material, spec, now=datetime.now(UTC))
    home = ctx.data_dir / "issuers" / "certbot" / "shop"
    assert not (home / "config" / "live" / "shop").exists()
    assert not (home / "config" / "archive" / "shop").exists()
    assert (home / "config" / "accounts").is_dir()  # the account is kept for the next run


def test_certbot_challenge_failure(acme_stack: AcmeStack) -> None:
    """certbot's failed http-01 becomes ChallengeFailed naming the domain."""
    acme_stack.challtestsrv.add_a("broken.example", ["127.0.0.2"])
    data = acme_stack.spec_data(_issuer(acme_stack), domains=["broken.example"])
    with pytest.raises(ChallengeFailed) as info:
        asyncio.run(pipeline.issue(validate_model(CertificateSpec, data), acme_stack.context()))
    assert info.value.domain == "broken.example"


def test_certbot_acme_server_down(acme_stack: AcmeStack) -> None:
    """certbot cannot reach the directory: ConnectionFailed."""
    issuer = _issuer(acme_stack) | {"directory": f"https://127.0.0.1:{free_port()}/dir"}
    with pytest.raises(ConnectionFailed):
        asyncio.run(pipeline.issue(validate_model(CertificateSpec, acme_stack.spec_data(issuer)), acme_stack.context()))
