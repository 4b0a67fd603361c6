"""POP3 (RFC 2595): greeting ``+OK``, ``CAPA`` (look for STLS), ``STLS``, expect ``+OK``."""

from __future__ import annotations

from certloop.plaintext import Plaintext
from certloop.starttls.reply import failed, not_offered, shown

_MAX_LINES = 100


async def negotiate(conn: Plaintext, server_name: str | None) -> None:
    greeting = await conn.read_line()
    if not greeting.startswith(b"+OK"):
        raise failed(f"unexpected greeting {shown(greeting)}")
    await conn.send(b"CAPA\r\n")
    status = await conn.read_line()
    if status.startswith(b"+OK"):
        caps: set[bytes] = set()
        for _ in range(_MAX_LINES):
            line = await conn.read_line()
            if line == b".":
                break
            caps.add(line.split(b" ", 1)[0].upper())
        else:
            raise failed(f"CAPA list longer than {_MAX_LINES} lines")
        if b"STLS" not in caps:
            raise not_offered("STARTTLS", "no STLS in CAPA")
    # A server without CAPA (-ERR) may still know STLS: ask and let the reply decide.
    await conn.send(b"STLS\r\n")
    reply = await conn.read_line()
    if not reply.startswith(b"+OK"):
        raise failed(f"unexpected reply {shown(reply)} to STLS")
