"""The rate-limit ledger and the retry policy: pure functions with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from certloop.config import validate_model
from certloop.renewer.config import DEFAULT_RATE_LIMITS, RateLimitRule
from certloop.renewer.issuers import ISSUERS
from certloop.renewer.issuers.base import IssuerSettingsBase
from certloop.renewer.policy import backoff_delay, next_attempt_at
from certloop.renewer.ratelimit import (
    LedgerRequest,
    check,
    failure_events,
    headroom,
    issued_events,
    ledger_request,
    order_events,
)
from certloop.renewer.spec import CertificateSpec

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LE = "https://acme-v02.api.letsencrypt.org/directory"
SHOP = LedgerRequest("acme", f"acme {LE}", ("shop.example", "www.shop.example"), directory=LE)


def test_fresh_ledger_allows_and_reports_full_headroom() -> None:
    """With no events every Let's Encrypt default limit has its full headroom."""
    assert check(DEFAULT_RATE_LIMITS, [], SHOP, NOW).allowed
    assert headroom(DEFAULT_RATE_LIMITS, [], [SHOP], NOW) == {
        ("acme", "new_orders_per_account"): 300,
        ("acme", "certificates_per_name_set"): 5,
        ("acme", "failed_authorizations_per_name"): 5,
    }


def test_five_certificates_for_the_same_name_set_block_the_sixth_for_a_week() -> None:
    """The 6th certificate for the exact same names inside 7 days is denied until the oldest leaves the
    window; the detail renders the window as a duration ("per 1w", not "per 7 days, 0:00:00")."""
    events = [e for i in range(5) for e in issued_events(SHOP, NOW - timedelta(days=6, hours=i), i)]
    decision = check(DEFAULT_RATE_LIMITS, events, SHOP, NOW)
    assert not decision.allowed
    assert decision.rule == "certificates_per_name_set"
    oldest = NOW - timedelta(days=6, hours=4)
    assert decision.retry_at == oldest + timedelta(days=7)
    assert decision.detail == (
        "rate limit certificates_per_name_set for shop.example,www.shop.example: 5/5 per 1w")
    # The names in another order do not share the limit; nor do events older than the window.
    other = LedgerRequest("acme", SHOP.account, ("blog.example",), directory=LE)
    assert check(DEFAULT_RATE_LIMITS, events, other, NOW).allowed
    assert check(DEFAULT_RATE_LIMITS, events, SHOP, NOW + timedelta(days=1)).allowed


def test_failed_authorizations_per_name_and_account_orders_count_separately() -> None:
    """5 failed authorizations for one name in an hour block orders containing that name."""
    events = [e for i in range(5) for e in failure_events(SHOP, ["www.shop.example"], NOW - timedelta(minutes=i), i)]
    decision = check(DEFAULT_RATE_LIMITS, events, SHOP, NOW)
    assert (decision.allowed, decision.rule) == (False, "failed_authorizations_per_name")
    assert decision.retry_at == NOW - timedelta(minutes=4) + timedelta(hours=1)
    assert headroom(DEFAULT_RATE_LIMITS, events, [SHOP], NOW)[("acme", "failed_authorizations_per_name")] == 0


def test_rules_apply_only_to_their_issuer_type_and_account() -> None:
    """A rule for `certbot` does not limit `acme`; another account's events do not count."""
    rules = [RateLimitRule(name="tiny", issuer="certbot", scope="account", limit=1, window=timedelta(hours=1))]
    certbot = LedgerRequest("certbot", "certbot x", ("a.example",))
    events = order_events(certbot, NOW, 1)
    assert not check(rules, events, certbot, NOW).allowed
    assert check(rules, events, SHOP, NOW).allowed
    assert check(rules, events, LedgerRequest("certbot", "certbot y", ("a.example",)), NOW).allowed


def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap() -> None:
    """Delays double per attempt, jitter stays in the upper half of the step, the cap holds."""
    base, cap = timedelta(seconds=30), timedelta(hours=1)
    assert backoff_delay(1, base, cap, 0.0) == timedelta(seconds=15)
    assert backoff_delay(1, base, cap, 0.999) < timedelta(seconds=30)
    assert backoff_delay(3, base, cap, 0.0) == timedelta(seconds=60)
    assert backoff_delay(50, base, cap, 1.0) == cap


def test_retry_after_wins_over_a_shorter_backoff() -> None:
    """A CA's Retry-After later than the backoff is honoured; an earlier one is not used to hurry."""
    base, cap = timedelta(seconds=30), timedelta(hours=1)
    later = NOW + timedelta(hours=2)
    assert next_attempt_at(1, NOW, base, cap, 0.5, later) == later
    assert next_attempt_at(1, NOW, base, cap, 0.5, NOW) == NOW + timedelta(seconds=22.5)


def test_orders_count_for_the_account_but_not_for_the_name_set() -> None:
    """Orders (failed or not) count against new_orders_per_account only; certificates per name set count
    issued certificates: ten failed orders leave the name set's five untouched."""
    events = [e for i in range(10) for e in order_events(SHOP, NOW - timedelta(minutes=i), i)]
    assert check(DEFAULT_RATE_LIMITS, events, SHOP, NOW).allowed
    room = headroom(DEFAULT_RATE_LIMITS, events, [SHOP], NOW)
    assert room[("acme", "new_orders_per_account")] == 290
    assert room[("acme", "certificates_per_name_set")] == 5


@pytest.mark.parametrize(
    ("issuer", "directory", "limited"),
    [
        ("acme", "https://acme-v02.api.letsencrypt.org/directory", True),
        ("certbot", "https://acme-staging-v02.api.letsencrypt.org/directory", True),
        ("acme.sh", "letsencrypt", True),
        ("acme", "https://127.0.0.1:14000/dir", False),  # pebble
        ("lego", "https://ca.internal.example/acme/acme/directory", False),  # a private CA (step-ca)
        ("command", "", False),
    ],
)
def test_lets_encrypt_defaults_apply_only_to_lets_encrypt(issuer: str, directory: str, limited: bool) -> None:
    """Five issued certificates for the same names block a sixth at Let's Encrypt only."""
    request = LedgerRequest(issuer, f"{issuer} {directory}".strip(), ("shop.example",), directory=directory)
    events = [e for i in range(5) for e in issued_events(request, NOW - timedelta(hours=i), i)]
    assert check(DEFAULT_RATE_LIMITS, events, request, NOW).allowed is not limited
    assert bool(headroom(DEFAULT_RATE_LIMITS, events, [request], NOW)) is limited


_ISSUERS: list[tuple[dict[str, Any], str]] = [
    ({"type": "acme", "directory": LE, "http01": {"webroot": "/var/www"}}, LE),
    ({"type": "certbot", "directory": LE, "webroot": "/var/www"}, LE),
    ({"type": "lego", "directory": LE, "email": "ops@shop.example", "webroot": "/var/www"}, LE),
    ({"type": "acme.sh", "server": "letsencrypt", "webroot": "/var/www"}, "letsencrypt"),
    ({"type": "httpsok", "token": "t", "cert_path": "/etc/httpsok/s.pem", "key_path": "/etc/httpsok/s.key"}, ""),
    ({"type": "command", "argv": ["/usr/local/bin/mint"]}, ""),
]


@pytest.mark.parametrize(("issuer", "directory"), _ISSUERS, ids=[i["type"] for i, _ in _ISSUERS])
def test_the_ledger_identity_is_the_ca_the_issuers_settings_name(issuer: dict[str, Any], directory: str) -> None:
    """Each issuer's settings say which CA they order from (acme.sh by its server, which may be a short name;
    httpsok and command name none): the ledger's account and the rules' directory match come from it."""
    spec = validate_model(CertificateSpec, {
        "id": "shop", "domains": ["shop.example", "www.shop.example"], "issuer": issuer,
        "outputs": {"fullchain": "/etc/tls/shop.pem", "key": "/etc/tls/shop.key"},
    })
    assert ledger_request(spec) == LedgerRequest(
        issuer["type"], f"{issuer['type']} {directory}".strip(), ("shop.example", "www.shop.example"),
        directory=directory,
    )
    if directory:  # the Let's Encrypt defaults apply to the three that order from it
        assert headroom(DEFAULT_RATE_LIMITS, [], [ledger_request(spec)], NOW)


def test_an_issuer_that_does_not_say_its_ca_cannot_be_built() -> None:
    """ca_directory is abstract: a settings model that forgets it fails when it is built, not silently
    outside the rate limits. (A throwaway model for this test, not a real issuer.)"""

    class Forgetful(IssuerSettingsBase):
        type: Literal["forgetful"]

    with pytest.raises(TypeError, match="ca_directory"):
        Forgetful(type="forgetful")
    assert all(ISSUERS[kind].settings.__abstractmethods__ == frozenset() for kind in ISSUERS)
