"""The managed-certificate spec: typed, unknown keys rejected, errors with paths; when to renew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from certloop.config import validate_model
from certloop.errors import ConfigError
from certloop.renewer.issuance import IssueRequest
from certloop.renewer.spec import CertificateSpec, renewal_due_at, should_renew


def _doc(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "shop",
        "domains": ["shop.example"],
        "issuer": {"type": "acme", "directory": "https://acme.example/dir", "http01": {"webroot": "/var/www"}},
        "outputs": {"fullchain": "/etc/tls/shop.pem", "key": "/etc/tls/shop.key"},
    }
    doc.update(extra)
    return doc


def test_defaults() -> None:
    """ec256, renew at 1/3 of the lifetime, cert files 0644 and keys 0600, verify within 30s."""
    spec = validate_model(CertificateSpec, _doc(deploy=[["nginx", "-t"], ["nginx", "-s", "reload"]]))
    assert spec.key_type == "ec256" and spec.renew_before == "1/3"
    assert spec.outputs.mode == 0o644 and spec.outputs.key_mode == 0o600
    assert spec.verify.timeout == timedelta(seconds=30) and spec.min_lifetime == timedelta(days=1)
    assert [s.argv for s in spec.deploy] == [["nginx", "-t"], ["nginx", "-s", "reload"]]


@pytest.mark.parametrize(
    ("patch", "path", "message"),
    [
        ({"id": "../etc"}, "id", "String should match pattern"),
        ({"domains": []}, "domains", "at least 1 item"),
        ({"domains": ["bad..name"]}, "domains", "is not a DNS name"),
        ({"domains": ["a.*.example"]}, "domains", "wildcard may only be the whole leftmost label"),
        ({"key_type": "dsa"}, "key_type", "Input should be"),
        ({"issuer": {"type": "nope"}}, "issuer", "does not match any of the expected tags"),
        ({"issuer": {"type": "acme", "directory": "x"}}, "issuer", "set exactly one of http01 or dns01"),
        ({"outputs": {"key": "/k"}}, "outputs", "set cert or fullchain"),
        ({"outputs": {"fullchain": "rel.pem", "key": "/k"}}, "outputs", "must be absolute"),
        ({"outputs": {"fullchain": "/f", "key": "/k", "key_mode": "0644"}}, "outputs", "world-readable"),
        ({"renew_before": "1/0"}, "renew_before", "between 0 and 1"),
        ({"renew_before": "soon"}, "renew_before", 'a duration like "30d" or a fraction'),
        ({"verify": [{"endpoint": "no-port"}]}, "verify.endpoints[0].endpoint", 'expected "host:port"'),
        ({"verify": [{"endpoint": "shop.example:443\n"}]}, "verify.endpoints[0].endpoint", 'expected "host:port"'),
        ({"id": "shop\n"}, "id", "String should match pattern"),
        ({"deploy": ["nginx -s reload"]}, "deploy[0]", "valid dictionary"),
        ({"surprise": 1}, "surprise", "unknown key"),
    ],
)
def test_bad_specs_name_the_path(patch: dict[str, Any], path: str, message: str) -> None:
    """Each mistake is a ConfigError whose path points at the field and whose message says what is wrong."""
    with pytest.raises(ConfigError) as info:
        validate_model(CertificateSpec, _doc(**patch))
    assert info.value.path.startswith(path), info.value.path
    assert message in info.value.message


def test_renewal_due_at_fraction_and_duration() -> None:
    """1/3 of a 90-day lifetime is 30 days before expiry; "7d" is 7 days before, whatever the lifetime."""
    nb = datetime(2026, 1, 1, tzinfo=UTC)
    na = nb + timedelta(days=90)
    assert renewal_due_at(validate_model(CertificateSpec, _doc()), nb, na) == na - timedelta(days=30)
    assert renewal_due_at(validate_model(CertificateSpec, _doc(renew_before="7d")), nb, na) == na - timedelta(days=7)
    short = nb + timedelta(days=6)  # a 6-day certificate renews with 2 days left by default
    assert renewal_due_at(validate_model(CertificateSpec, _doc()), nb, short) == short - timedelta(days=2)


def test_should_renew() -> None:
    """Nothing installed: renew. Inside the window: renew. Before it: do not."""

    class Facts:
        not_before = datetime(2026, 1, 1, tzinfo=UTC)
        not_after = datetime(2026, 4, 1, tzinfo=UTC)

    spec = validate_model(CertificateSpec, _doc())
    assert should_renew(spec, None, datetime(2026, 1, 2, tzinfo=UTC))
    assert not should_renew(spec, Facts(), datetime(2026, 2, 1, tzinfo=UTC))
    assert should_renew(spec, Facts(), datetime(2026, 3, 15, tzinfo=UTC))


def test_json_schema_is_generated() -> None:
    """The JSON Schema lists every issuer type and forbids unknown keys."""
    schema = CertificateSpec.model_json_schema()
    assert schema["additionalProperties"] is False
    text = str(schema)
    for kind in ("acme", "certbot", "lego", "acme.sh", "httpsok", "command"):
        assert f"'const': '{kind}'" in text


def test_the_issuer_is_asked_for_a_request_not_the_spec() -> None:
    """The request an issuer gets holds the id, the normalised names in order, the key type and every live
    output path (an issuer such as httpsok checks its own files against them)."""
    doc = _doc(domains=["Shop.Example.", "*.shop.example"], key_type="rsa3072",
               outputs={"cert": "/etc/tls/c.pem", "chain": "/etc/tls/ch.pem", "key": "/etc/tls/k.pem"})
    request = validate_model(CertificateSpec, doc).issue_request
    assert request == IssueRequest(
        certificate_id="shop", domains=("shop.example", "*.shop.example"), key_type="rsa3072",
        outputs=(Path("/etc/tls/k.pem"), Path("/etc/tls/c.pem"), Path("/etc/tls/ch.pem")),
    )


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        ({"type": "lego", "directory": "https://acme.example/dir", "email": "ops@shop.example", "http_port": 80},
         "lego cannot issue key_type rsa3072"),
        ({"type": "httpsok", "token": "t", "cert_path": "/etc/tls/shop.pem", "key_path": "/etc/tls/other.key"},
         "httpsok's cert_path/key_path must not be outputs"),
    ],
)
def test_an_issuers_own_rule_rejects_the_spec_at_load(issuer: dict[str, Any], message: str) -> None:
    """A rule that only one issuer has (its settings' check_request) rejects the certificate when the config
    loads, at the certificate's path, with the issuer's words."""
    with pytest.raises(ConfigError) as info:
        validate_model(CertificateSpec, _doc(issuer=issuer, key_type="rsa3072"))
    assert info.value.path == "", info.value.path
    assert message in info.value.message
