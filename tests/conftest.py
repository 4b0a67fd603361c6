"""Shared fixtures. Real peers (nginx, pebble, Prometheus, Alertmanager) come from `stack/`."""

from __future__ import annotations

import pytest

from certloop.caches import Caches
from tests.support.pki import Pki


@pytest.fixture
def pki() -> Pki:
    """A fresh root + intermediate CA for this test."""
    return Pki()


@pytest.fixture
def caches() -> Caches:
    """What parsing, describing and verifying remember: a fresh one per test, as a daemon makes one."""
    return Caches()

# Real-peer fixtures (nginx, pebble, Prometheus, Alertmanager) live in tests/support/fixtures.py.
pytest_plugins = ["tests.support.fixtures"]
