"""The lego issuer drives Debian's real lego against a real pebble, http-01 via nginx's webroot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from certloop.config import validate_model
from certloop.errors import ConfigError
from certloop.renewer import pipeline
from certloop.renewer.errors import ChallengeFailed, ConnectionFailed
from certloop.renewer.issuers import lego
from certloop.renewer.spec import CertificateSpec
from stack.process import free_port
from tests.renewer.standins.peers import AcmeStack, acme_stack_fixture  # noqa: F401  # fixture


def _issuer(stack: AcmeStack) -> dict[str, object]:
    return {
        "type": "lego",
        "directory": stack.pebble.directory_url,
        "ca_bundle": str(stack.pebble.ca_bundle_path),
        "email": "ops@shop.example",
        "webroot": str(stack.webroot),
    }


def test_argv_follows_legos_documented_flags(acme_stack: AcmeStack) -> None:
    """Global flags before the `run` command, webroot http-01, key type passed through."""
    spec = validate_model(CertificateSpec, acme_stack.spec_data(_issuer(acme_stack), key_type="rsa2048"))
    assert isinstance(spec.issuer, lego.LegoSettings)
    argv = lego.build_argv(spec.issuer, spec.issue_request, acme_stack.data_dir / "h", 60)
    assert argv[0] == "lego" and argv[-1] == "run"
    assert "--accept-tos" in argv and "--http" in argv
    assert argv[argv.index("--http.webroot") + 1] == str(acme_stack.webroot)
    assert argv[argv.index("--key-type") + 1] == "rsa2048"
    assert argv[argv.index("--path") + 1] == str(acme_stack.data_dir / "h")


def test_rsa3072_is_rejected_for_lego(acme_stack: AcmeStack) -> None:
    """lego has no rsa3072 key type: the config is rejected, naming the problem."""
    with pytest.raises(ConfigError, match="lego cannot issue key_type rsa3072"):
        validate_model(CertificateSpec, acme_stack.spec_data(_issuer(acme_stack), key_type="rsa3072"))


def test_lego_issues_from_pebble_and_leaves_no_key_behind(acme_stack: AcmeStack) -> None:
    """Real lego gets a certificate from pebble; its files are read into memory and removed."""
    spec = validate_model(CertificateSpec, acme_stack.spec_data(_issuer(acme_stack)))
    ctx = acme_stack.context()
    material = asyncio.run(pipeline.issue(spec, ctx))
    pipeline.validate(material, spec, now=datetime.now(UTC))
    home = ctx.data_dir / "issuers" / "lego" / "shop"
    assert list((home / "certificates").iterdir()) == []
    assert (home / "accounts").is_dir()


def test_lego_challenge_failure(acme_stack: AcmeStack) -> None:
    """lego's failed http-01 becomes ChallengeFailed naming the domain."""
    acme_stack.challtestsrv.add_a("broken.example", ["127.0.0.2"])
    data = acme_stack.spec_data(_issuer(acme_stack), domains=["broken.example"])
    with pytest.raises(ChallengeFailed) as info:
        asyncio.run(pipeline.issue(validate_model(CertificateSpec, data), acme_stack.context()))
    assert info.value.domain == "broken.example"
    # lego's own words survive: the CA's problem type and what it could not reach, not just "exit 1"
    assert "urn:ietf:params:acme:error:" in info.value.detail, info.value.detail
    assert "broken.example" in info.value.detail.split("(exit 1):", 1)[1]


def test_lego_acme_server_down(acme_stack: AcmeStack) -> None:
    """lego cannot reach the directory: ConnectionFailed."""
    issuer = _issuer(acme_stack) | {"directory": f"https://127.0.0.1:{free_port()}/dir"}
    spec = validate_model(CertificateSpec, acme_stack.spec_data(issuer))
    with pytest.raises(ConnectionFailed):
        asyncio.run(pipeline.issue(spec, acme_stack.context()))
