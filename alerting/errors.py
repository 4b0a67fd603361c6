"""The exceptions of certloop's alerting and dashboards builders (``make generate``)."""

from __future__ import annotations

from certloop.errors import CertloopError

__all__ = ["BuildError"]


class BuildError(CertloopError):
    """A generated file cannot be built: the mixin or the dashboards' thresholds do not evaluate, or
    evaluate to something that is not what the build expects (the message says what)."""
