"""Bounded dictionaries that remember parsed certificates and their facts by content.

    cert = remember(_DER_CACHE, der, x509.load_der_x509_certificate(der))   # stores and returns the value

Shared by :mod:`certloop.x509` (DER, PEM blocks, file contents) and :mod:`certloop.facts` (facts, names,
keys), so every such cache has the same bound and the same eviction.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["remember"]

_CACHE_SIZE = 16_384  # certificates (~2-3 KB each with their DER): bounds memory, fits an inventory

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V) -> V:
    """Store ``value`` under ``key`` and return it; a full ``cache`` first drops its oldest entries."""
    if len(cache) >= _CACHE_SIZE:
        # Evict the oldest tenth: cheap, and a steady inventory never reaches the limit.
        for old in list(cache)[: _CACHE_SIZE // 10]:
            cache.pop(old, None)
    cache[key] = value
    return value
