"""Rendering one target's observations (pure): labels, escaping, the /probe render cache, verdict time bounds."""

from __future__ import annotations

from datetime import timedelta

from certloop.exporter.probe import render_probe
from certloop.exporter.report import ExporterCaches, Observation, TargetReport, assess, render
from certloop.truststore import TrustStore
from tests.exporter.support import value
from tests.support.pki import Pki


def _text(fragments: dict[str, bytes]) -> str:
    return render_probe(fragments).decode()


def test_cached_render_equals_fresh_render_and_follows_the_verdict(pki: Pki) -> None:
    """The /probe cache returns what a fresh render would, and a new verdict for the same chain is not served stale."""
    leaf = pki.leaf(["cache.test"], days=10)
    caches = ExporterCaches()
    trust = TrustStore.from_pem(pki.root_pem, caches)
    chain = [leaf.cert, *leaf.chain]

    def report(days_later: int) -> TargetReport:
        judged = assess(chain, trust=trust, at=pki.now + timedelta(days=days_later), hostname="cache.test",
                        caches=caches)
        obs = Observation("endpoint", "cache.test:443", "127.0.0.1", True, 0.01, chain=judged,
                          hostname_match=True, tls_version="TLS 1.3", cipher="TLS_AES_128_GCM_SHA256")
        return TargetReport("endpoint", "cache.test:443", (("team", 'we"b'),), (obs,), True)

    fresh = render(report(0), ExporterCaches())
    assert render(report(0), caches, reuse=True) == fresh
    assert len(caches.chain_lines) == 1
    assert render(report(0), caches, reuse=True) == fresh  # served from the cache this time
    assert len(caches.chain_lines) == 1
    later = _text(render(report(20), caches, reuse=True))
    assert value(later, "certloop_verify_verdict", verdict="expired", team='we"b') == 1
    assert value(later, "certloop_verify_ok") == 0


def test_valid_until_is_the_next_boundary(pki: Pki) -> None:
    """A verdict holds until the earliest later not_before/not_after of the chain or the trust store."""
    leaf = pki.leaf(["soon.test"], days=3)
    caches = ExporterCaches()
    judged = assess([leaf.cert, *leaf.chain], trust=TrustStore.from_pem(pki.root_pem, caches), at=pki.now,
                    caches=caches)
    assert judged.valid_until == leaf.cert.not_valid_after_utc
    failed = render(TargetReport("file", "/x.pem", (), (Observation("file", "/x.pem", "", False, 0.0,
                                                                      reason="empty"),)), caches)
    assert set(failed) == {"certloop_probe_success", "certloop_probe_duration_seconds",
                           "certloop_probe_failure_reason"}
