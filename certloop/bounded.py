"""The one bound every cache in certloop keeps: a plain ``dict`` that drops its oldest tenth when full.

    cert = seen.get(der)
    if cert is None:
        cert = remember(seen, der, x509.load_der_x509_certificate(der))   # stores and returns the value

The maps stay exact ``dict`` objects, so a hit is a plain dictionary lookup (the interpreter's fast
path for ``dict.get``; a subclass would lose it on every hit); only a miss goes through
:func:`remember`, which keeps the bound. Evicting the oldest tenth (insertion order) is cheap, and a
steady inventory, which fits, never evicts. Who holds the maps and passes them down is
:class:`certloop.caches.Caches`; nothing in certloop keeps one in a module global.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["CERTIFICATES", "VERDICTS", "remember"]

CERTIFICATES = 16_384
"""Entries per map keyed by certificate: bounds memory (what an entry takes: benchmarks/RESULTS.md,
"Certificate facts caches") and fits an inventory."""
VERDICTS = 50_000
"""Entries per map keyed by chain and time window (a verdict is a few bytes)."""

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int = CERTIFICATES) -> V:
    """Store ``value`` under ``key`` and return it; a ``cache`` of ``limit`` entries first drops its oldest tenth."""
    if len(cache) >= limit:
        for old in list(cache)[: max(1, limit // 10)]:
            cache.pop(old, None)
    cache[key] = value
    return value
