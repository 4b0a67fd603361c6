"""FTP (RFC 4217): greeting 220, ``AUTH TLS``, expect 234."""

from __future__ import annotations

from certloop.plaintext import Plaintext
from certloop.starttls.reply import failed, not_offered, shown

_MAX_LINES = 100
_NOT_IMPLEMENTED = frozenset({500, 502, 504})


async def read_reply(conn: Plaintext) -> tuple[int, bytes]:
    """One reply: ``220 text`` or ``220-first`` ... ``220 last`` (inner lines are free text)."""
    first = await conn.read_line()
    code = first[:3]
    if not code.isdigit() or first[3:4] not in (b"", b" ", b"-"):
        raise failed(f"malformed reply {shown(first)!r}")
    if first[3:4] == b"-":
        for _ in range(_MAX_LINES):
            line = await conn.read_line()
            if line[:3] == code and line[3:4] in (b" ", b""):
                break
        else:
            raise failed(f"reply longer than {_MAX_LINES} lines")
    return int(code), first[4:]


async def negotiate(conn: Plaintext, server_name: str | None) -> None:
    code, text = await read_reply(conn)
    if code == 120:  # "service ready in n minutes": the real greeting follows
        code, text = await read_reply(conn)
    if code != 220:
        raise failed(f"unexpected greeting {code} {shown(text)}")
    await conn.send(b"AUTH TLS\r\n")
    code, text = await read_reply(conn)
    if code in _NOT_IMPLEMENTED:
        raise not_offered("AUTH TLS", f"reply {code} {shown(text)}")
    if code != 234:
        raise failed(f"unexpected reply {code} {shown(text)} to AUTH TLS")
