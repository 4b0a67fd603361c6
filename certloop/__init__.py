"""certloop shared core: config primitives, certificate facts and verification, TLS fetch, CLI entry."""

__version__ = "0.1.0"
