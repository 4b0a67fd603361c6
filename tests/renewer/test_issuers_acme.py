"""The built-in ACME issuer against a real pebble (Debian), challtestsrv for DNS and nginx for http-01."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from acme import messages

from certloop.config import validate_model
from certloop.renewer import pipeline
from certloop.renewer.errors import ChallengeFailed, ConnectionFailed, RateLimited, Unauthorized
from certloop.renewer.issuers import acme_client
from certloop.renewer.spec import CertificateSpec
from stack.pebble import Pebble
from stack.process import free_port, port_open
from tests.renewer.standins.peers import DOMAIN, STANDINS, AcmeStack, acme_stack_fixture  # noqa: F401  # fixture

HOOK = STANDINS / "dns_hook.py"


def _issuer(stack: AcmeStack, **challenge: object) -> dict[str, object]:
    return {
        "type": "acme",
        "directory": stack.pebble.directory_url,
        "ca_bundle": str(stack.pebble.ca_bundle_path),
        "email": "ops@shop.example",
        "poll_timeout": "20s",
        **(challenge or {"http01": {"webroot": str(stack.webroot)}}),
    }


def _spec(stack: AcmeStack, **challenge: object) -> CertificateSpec:
    return validate_model(CertificateSpec, stack.spec_data(_issuer(stack, **challenge)))


def test_http01_webroot_issues_a_certificate_that_validates(acme_stack: AcmeStack) -> None:
    """http-01 through nginx's webroot: pebble issues a leaf for the domain chaining to its root."""
    spec = _spec(acme_stack)
    ctx = acme_stack.context()
    material = asyncio.run(pipeline.issue(spec, ctx))
    pipeline.validate(material, spec, now=datetime.now(UTC))  # includes the chain to pebble's root
    leftovers = list((acme_stack.webroot / ".well-known" / "acme-challenge").iterdir())
    assert leftovers == []  # tokens are removed after the order
    assert not any((ctx.data_dir / "staging" / "shop").iterdir())  # staging removed (plaintext key)


def test_account_is_persisted_encrypted_and_reused(acme_stack: AcmeStack) -> None:
    """The account key is sealed in the data dir and the second order reuses the registration."""
    spec = _spec(acme_stack)
    ctx = acme_stack.context()
    asyncio.run(pipeline.issue(spec, ctx))
    accounts = list((ctx.data_dir / "issuers" / "acme-accounts").iterdir())
    assert len(accounts) == 1
    sealed = (accounts[0] / "account-key.sealed").read_bytes()
    assert b"PRIVATE KEY" not in sealed and sealed.startswith(b"CLK1")
    regr = json.loads((accounts[0] / "registration.json").read_text())
    asyncio.run(pipeline.issue(spec, ctx))
    assert json.loads((accounts[0] / "registration.json").read_text())["uri"] == regr["uri"]


def test_an_account_key_the_ca_already_knows_is_used_as_it_is(acme_stack: AcmeStack) -> None:
    """A key registered a moment ago (two renewals of one new account at once) or a lost registration.json:
    the CA answers newAccount with the existing account's URL, and the order goes on with that account."""
    spec = _spec(acme_stack)
    ctx = acme_stack.context()
    asyncio.run(pipeline.issue(spec, ctx))
    (account,) = (ctx.data_dir / "issuers" / "acme-accounts").iterdir()
    uri = json.loads((account / "registration.json").read_text())["uri"]
    (account / "registration.json").unlink()
    asyncio.run(pipeline.issue(spec, ctx))
    assert json.loads((account / "registration.json").read_text())["uri"] == uri


def test_dns01_hook_gets_the_record_in_its_environment(
    acme_stack: AcmeStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dns-01: the hook publishes the TXT record named in its environment; cleanup runs afterwards."""
    log = tmp_path / "hook.log"
    url = acme_stack.challtestsrv.management_url
    hook = {
        "hook": [sys.executable, str(HOOK), "set", url],
        "cleanup": [sys.executable, str(HOOK), "clear", url],
    }
    spec = _spec(acme_stack, dns01=hook)
    monkeypatch.setenv("CERTLOOP_HOOK_LOG", str(log))
    material = asyncio.run(pipeline.issue(spec, acme_stack.context()))
    pipeline.validate(material, spec, now=datetime.now(UTC))
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["action"] for c in calls] == ["set", "clear"]
    assert calls[0]["name"] == f"_acme-challenge.{DOMAIN}."
    assert len(calls[0]["value"]) == 43  # base64url SHA-256 of the key authorization


def test_challenge_failure_names_the_domain(acme_stack: AcmeStack) -> None:
    """A name whose http-01 answer cannot be fetched fails with ChallengeFailed for that domain."""
    acme_stack.challtestsrv.add_a("broken.example", ["127.0.0.2"])  # nothing listens there
    data = acme_stack.spec_data(_issuer(acme_stack), domains=["broken.example"])
    spec = validate_model(CertificateSpec, data)
    with pytest.raises(ChallengeFailed) as info:
        asyncio.run(pipeline.issue(spec, acme_stack.context()))
    assert info.value.domain == "broken.example"


def test_acme_server_down_is_connection_failed(acme_stack: AcmeStack) -> None:
    """An unreachable directory URL raises ConnectionFailed (retryable), not a generic error."""
    issuer = _issuer(acme_stack) | {"directory": f"https://127.0.0.1:{free_port()}/dir"}
    spec = validate_model(CertificateSpec, acme_stack.spec_data(issuer))
    with pytest.raises(ConnectionFailed):
        asyncio.run(pipeline.issue(spec, acme_stack.context()))


def test_acme_problem_types_map_to_errors() -> None:
    """rateLimited carries Retry-After as an aware instant; unauthorized maps to Unauthorized.

    Pure translation test: pebble cannot be made to rate-limit on demand, so the problem
    documents are built here (the same objects the acme library raises).
    """
    net = acme_client._Network(None)
    response = requests.Response()
    response.headers["Retry-After"] = "120"
    net.last_response = response
    now = datetime(2026, 1, 1, tzinfo=UTC)
    err = messages.Error(typ="urn:ietf:params:acme:error:rateLimited", detail="too many")
    mapped = acme_client._translate(err, net, now)
    assert isinstance(mapped, RateLimited)
    assert mapped.retry_after == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)
    err = messages.Error(typ="urn:ietf:params:acme:error:unauthorized", detail="no")
    assert isinstance(acme_client._translate(err, net, now), Unauthorized)


class _EabPebble(Pebble):
    """pebble requiring External Account Binding with one MAC key (pebble's documented config keys)."""

    def config(self) -> dict[str, object]:
        conf = super().config()
        inner = conf["pebble"]
        assert isinstance(inner, dict)
        inner["externalAccountBindingRequired"] = True
        inner["externalAccountMACKeys"] = {"kid-1": EAB_KEY}
        return conf


EAB_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def test_eab_is_sent_when_configured(acme_stack: AcmeStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a pebble that requires EAB: without it the account is refused (Unauthorized), with the
    kid and HMAC key (from ${ENV}) the account registers and the order succeeds."""
    pebble = _EabPebble(tmp_path / "eab-pebble", dns_server=acme_stack.challtestsrv.dns_address,
                        http_port=acme_stack.http_port)
    pebble.start()
    try:
        issuer = _issuer(acme_stack) | {"directory": pebble.directory_url, "ca_bundle": str(pebble.ca_bundle_path)}
        spec = validate_model(CertificateSpec, acme_stack.spec_data(issuer, trust_bundle=None))
        with pytest.raises(Unauthorized):
            asyncio.run(pipeline.issue(spec, acme_stack.context()))
        monkeypatch.setenv("EAB_HMAC", EAB_KEY)
        issuer["eab"] = {"kid": "kid-1", "hmac_key": "${EAB_HMAC}"}
        spec = validate_model(CertificateSpec, acme_stack.spec_data(issuer, trust_bundle=None))
        material = asyncio.run(pipeline.issue(spec, acme_stack.context()))
        pipeline.validate(material, spec, now=datetime.now(UTC))
    finally:
        pebble.stop()


def test_http01_standalone_listener(acme_stack: AcmeStack, tmp_path: Path) -> None:
    """http-01 answered by our own listener: pebble validates on the port we listen on."""
    port = free_port()
    pebble = Pebble(tmp_path / "standalone-pebble", dns_server=acme_stack.challtestsrv.dns_address, http_port=port)
    pebble.start()
    try:
        issuer = _issuer(acme_stack, http01={"listen": f"127.0.0.1:{port}"}) | {
            "directory": pebble.directory_url, "ca_bundle": str(pebble.ca_bundle_path)}
        spec = validate_model(CertificateSpec, acme_stack.spec_data(issuer, trust_bundle=str(pebble.trust_bundle_path)))
        material = asyncio.run(pipeline.issue(spec, acme_stack.context()))
        pipeline.validate(material, spec, now=datetime.now(UTC))
        assert not port_open("127.0.0.1", port)  # the listener is gone afterwards
    finally:
        pebble.stop()
