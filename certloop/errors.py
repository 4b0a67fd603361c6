"""The root of certloop's exception tree, and every exception the core defines.

Each package derives its own root from :class:`CertloopError` in its own errors module
(``certloop.renewer.errors``, ``certloop.alerting.errors``); subclasses carry data, never only a
message, so callers can branch on facts rather than parse text. The core's:

    CertloopError
    ├── ConfigError(path, message, source)  a configuration value is wrong
    ├── ListenError(host, port, detail)     a daemon cannot listen (HttpServer.start)
    ├── ProbeError(reason, detail)          a TLS probe failed, for a FailureReason (certloop.tls.fetch,
    │                                       the STARTTLS negotiators; handled by both daemons)
    ├── FileError(path, reason, detail)     a certificate file cannot be used, for a FileReason (certloop.x509)
    ├── TrustStoreError(source, message)    a trust store cannot be loaded (certloop.truststore)
    ├── DnsFailure(kind, detail)            no usable DNS answer (certloop.dnsclient; resolve translates it)
    └── ObserveError(detail)                the observing TLS path stopped (certloop.tlsobserve)
        ├── Unsupported                     not handled there: repeat the probe through OpenSSL
        └── Refused(too_large)              final, as OpenSSL would report it
    HttpError(status, message)              an HTTP answer given by raising (certloop.httpserver); not a
                                            CertloopError: it is an answer, not a failure of certloop

An exception that must subclass a library's own to travel through that library stays at that seam:
``certloop.httpconnections.Refused`` is aiohttp's ``BadHttpMessage`` for its parser error path.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CertloopError",
    "ConfigError",
    "DnsFailure",
    "FailureReason",
    "FileError",
    "FileReason",
    "HttpError",
    "ListenError",
    "ObserveError",
    "ProbeError",
    "Refused",
    "TrustStoreError",
    "Unsupported",
]


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


class FileReason(StrEnum):
    """Why a certificate file yielded no certificate. A fixed set: used as a metric label value."""

    NOT_FOUND = "not_found"
    PERMISSION_DENIED = "permission_denied"
    NOT_A_FILE = "not_a_file"
    SYMLINK_LOOP = "symlink_loop"
    TOO_LARGE = "too_large"
    EMPTY = "empty"
    NO_CERTIFICATE = "no_certificate"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 -- a reason label, not a secret
    PARSE_ERROR = "parse_error"
    UNREADABLE = "unreadable"


class FileError(CertloopError):
    """A certificate file could not be used at all. ``reason`` is from :class:`FileReason`."""

    def __init__(self, path: str, reason: FileReason, detail: str = "") -> None:
        self.path = path
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


class TrustStoreError(CertloopError):
    """A trust store could not be loaded: ``source`` names the bundle, ``message`` says why."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.message = message
        super().__init__(f"{source}: {message}")


class DnsFailure(CertloopError):
    """No usable DNS answer: ``kind`` is ``timeout``, ``servers`` (every server failed) or ``name``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class ObserveError(CertloopError):
    """The observing TLS path (:mod:`certloop.tlsobserve`) stopped; ``detail`` says why (short, safe to show)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class Unsupported(ObserveError):
    """Something the observing path does not handle: repeat the probe through OpenSSL."""


class Refused(ObserveError):
    """A final failure of the observing path that OpenSSL would report the same way.

    ``too_large`` is true for a certificate message over ``certloop.tlswire.MAX_CERTIFICATE_MESSAGE``
    (the ``chain_too_large`` reason); otherwise the server did not speak TLS (``handshake``).
    """

    def __init__(self, detail: str, *, too_large: bool = False) -> None:
        self.too_large = too_large
        super().__init__(detail)


class HttpError(Exception):
    """An answer given by raising (``Request.read`` raises it for 408/413/415/400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
