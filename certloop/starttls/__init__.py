"""STARTTLS negotiators: the plaintext preamble before a TLS upgrade, one module per protocol.

    await fetch(address, 25, server_name="mail.example", starttls=STARTTLS["smtp"])
    await fetch(address, 25, server_name="mail.example", starttls="smtp")      # the same

Every negotiator has one signature, :data:`certloop.plaintext.Negotiator`:
``async (conn: Plaintext, server_name: str | None) -> None``. It returns when the server is ready
for the TLS ClientHello and raises ``ProbeError(starttls, detail)`` otherwise, with a detail that
says what happened ("server does not offer STARTTLS", "unexpected reply 502 ..."). Reads are
bounded in size by :class:`certloop.plaintext.Plaintext` and in time by the caller's handshake deadline.
Adding a protocol is one module plus one entry here.
"""

from __future__ import annotations

from certloop.plaintext import Negotiator
from certloop.starttls import ftp, imap, ldap, mysql, pop3, postgres, smtp  # one module per protocol

__all__ = ["STARTTLS", "ftp", "imap", "ldap", "mysql", "pop3", "postgres", "smtp"]

STARTTLS: dict[str, Negotiator] = {
    "smtp": smtp.negotiate,
    "imap": imap.negotiate,
    "pop3": pop3.negotiate,
    "ftp": ftp.negotiate,
    "postgres": postgres.negotiate,
    "mysql": mysql.negotiate,
    "ldap": ldap.negotiate,
}
