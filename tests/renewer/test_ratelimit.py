"""The rate-limit ledger and the retry policy: pure functions with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from renewer.config import DEFAULT_RATE_LIMITS, RateLimitRule
from renewer.policy import backoff_delay, next_attempt_at
from renewer.ratelimit import LedgerRequest, check, failure_events, headroom, order_events

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SHOP = LedgerRequest("acme", "acme https://ca.example/dir", ("shop.example", "www.shop.example"))


def test_fresh_ledger_allows_and_reports_full_headroom() -> None:
    """With no events every Let's Encrypt default limit has its full headroom."""
    assert check(DEFAULT_RATE_LIMITS, [], SHOP, NOW).allowed
    assert headroom(DEFAULT_RATE_LIMITS, [], [SHOP], NOW) == {
        ("acme", "new_orders_per_account"): 300,
        ("acme", "orders_per_name_set"): 5,
        ("acme", "failed_authorizations_per_name"): 5,
    }


def test_five_orders_for_the_same_name_set_block_the_sixth_for_a_week() -> None:
    """The 6th order for the exact same names inside 7 days is denied until the oldest leaves the window."""
    events = [e for i in range(5) for e in order_events(SHOP, NOW - timedelta(days=6, hours=i), i)]
    decision = check(DEFAULT_RATE_LIMITS, events, SHOP, NOW)
    assert not decision.allowed
    assert decision.rule == "orders_per_name_set"
    oldest = NOW - timedelta(days=6, hours=4)
    assert decision.retry_at == oldest + timedelta(days=7)
    assert "5/5" in decision.detail
    # The names in another order do not share the limit; nor do events older than the window.
    other = LedgerRequest("acme", SHOP.account, ("blog.example",))
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
