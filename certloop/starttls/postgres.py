"""PostgreSQL: the 8-byte SSLRequest message; the server answers one byte, ``S`` to go ahead."""

from __future__ import annotations

import struct

from certloop.plaintext import Plaintext
from certloop.starttls.reply import failed, not_offered, shown

SSL_REQUEST = struct.pack("!II", 8, 80877103)


async def negotiate(conn: Plaintext, server_name: str | None) -> None:
    await conn.send(SSL_REQUEST)
    answer = await conn.read_exact(1)
    if answer == b"S":
        return
    if answer == b"N":
        raise not_offered("TLS", "SSLRequest answered N")
    raise failed(f"unexpected reply {shown(answer)!r} to SSLRequest")
