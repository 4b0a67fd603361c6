"""The root of certloop's exception tree, and the errors shared across packages.

Each package derives its own root from :class:`CertloopError`; subclasses carry data, never
only a message, so callers can branch on facts rather than parse text. Here too: :class:`ConfigError`
(a configuration value) and :class:`ProbeError` (a TLS probe failed, for a :class:`FailureReason`:
raised by :func:`certloop.tls.fetch` and the STARTTLS negotiators, handled by both daemons).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CertloopError", "ConfigError", "FailureReason", "ListenError", "ProbeError"]


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


class ListenError(CertloopError):
    """A daemon cannot listen on ``host:port``; ``detail`` is the operating system's reason.

    Raised by :meth:`certloop.httpserver.HttpServer.start`, the one seam where binding fails, so both
    daemons tell it from other failures and exit with the same code (``ExitCode.CANNOT_LISTEN``).
    """

    def __init__(self, host: str, port: int, detail: str) -> None:
        self.host = host
        self.port = port
        self.detail = detail
        shown = f"[{host}]" if ":" in host else host
        super().__init__(f"cannot listen on {shown}:{port}: {detail}")


class FailureReason(StrEnum):
    """Why a probe failed: a fixed set, exported as the ``reason`` label."""

    DNS = "dns"
    CONNECT = "connect"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    HANDSHAKE = "handshake"
    STARTTLS = "starttls"
    NO_CERTIFICATE = "no_certificate"
    CHAIN_TOO_LARGE = "chain_too_large"
    BAD_SERVER_NAME = "bad_server_name"
    """The server name cannot be sent as SNI (an empty label, a label over 63 characters, a
    character IDNA 2008 does not allow): nothing was sent; the configuration must change."""


class ProbeError(CertloopError):
    """A probe failed for ``reason``; ``detail`` is short text safe to show (never a label value).

    ``address``/``port`` say which endpoint failed when known (``certloop.tls.fetch`` fills them so results
    can be labelled by address).
    """

    def __init__(
        self,
        reason: FailureReason,
        detail: str,
        *,
        address: str | None = None,
        port: int | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.address = address
        self.port = port
        where = f"{address}:{port}: " if address is not None else ""
        super().__init__(f"{where}{reason}: {detail}")

    def at(self, address: str, port: int) -> ProbeError:
        """The same failure, attributed to ``address:port``."""
        err = ProbeError(self.reason, self.detail, address=address, port=port)
        err.__cause__ = self.__cause__
        return err
