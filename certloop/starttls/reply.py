"""What negotiators share: showing a server's words safely, and the failures they raise."""

from __future__ import annotations

from certloop.errors import FailureReason, ProbeError

_SHOWN = 120


def shown(data: bytes) -> str:
    """A server's reply as short printable text for a ``detail`` (never trusted, never a label)."""
    text = data.decode("ascii", "replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text).strip()
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def failed(detail: str) -> ProbeError:
    """A STARTTLS negotiation failure."""
    return ProbeError(FailureReason.STARTTLS, detail)


def not_offered(what: str = "STARTTLS", evidence: str = "") -> ProbeError:
    """The server answers but does not offer the upgrade: the precise, common case."""
    return failed(f"server does not offer {what}" + (f" ({evidence})" if evidence else ""))
