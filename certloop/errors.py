"""The root of certloop's exception tree, shared by every package.

Each package derives its own root from :class:`CertloopError`; subclasses carry data, never
only a message, so callers can branch on facts rather than parse text.
"""

from __future__ import annotations


class CertloopError(Exception):
    """Root of every error certloop raises on purpose."""


class ConfigError(CertloopError):
    """A configuration value is wrong. ``path`` names where, e.g. ``targets[3].timeout``."""

    def __init__(self, path: str, message: str, *, source: str | None = None) -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {message}" if path else f"{where}{message}")
