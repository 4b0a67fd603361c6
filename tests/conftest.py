"""Shared fixtures. Real peers (nginx, pebble, Prometheus, Alertmanager) come from `stack/`."""

from __future__ import annotations

import pytest

from tests.support.pki import Pki


@pytest.fixture
def pki() -> Pki:
    """A fresh root + intermediate CA for this test."""
    return Pki()

# Real-peer fixtures (nginx, pebble, Prometheus, Alertmanager) live in tests/support/fixtures.py.
pytest_plugins = ["tests.support.fixtures"]
