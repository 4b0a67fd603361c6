"""IMAP (RFC 3501 / 9051): greeting ``* OK``, capabilities (from the greeting or CAPABILITY),
``STARTTLS``, expect the tagged ``OK``."""

from __future__ import annotations

from certloop.plaintext import Plaintext
from certloop.starttls.reply import failed, not_offered, shown

_MAX_LINES = 100


def _capabilities(text: bytes) -> set[bytes]:
    return {word.upper() for word in text.split()}


async def _tagged(conn: Plaintext, tag: bytes) -> tuple[bytes, list[bytes]]:
    """Read until the line tagged ``tag``; return it and the untagged lines before it."""
    untagged: list[bytes] = []
    for _ in range(_MAX_LINES):
        line = await conn.read_line()
        if line.startswith(tag + b" "):
            return line[len(tag) + 1 :], untagged
        untagged.append(line)
    raise failed(f"no tagged reply to {tag.decode()} within {_MAX_LINES} lines")


async def negotiate(conn: Plaintext, server_name: str | None) -> None:
    greeting = await conn.read_line()
    if greeting.startswith(b"* PREAUTH"):
        raise failed("server greeted with PREAUTH: STARTTLS is not allowed once authenticated")
    if not greeting.startswith(b"* OK"):
        raise failed(f"unexpected greeting {shown(greeting)}")
    upper = greeting.upper()
    start = upper.find(b"[CAPABILITY ")
    if start >= 0:
        end = upper.find(b"]", start)
        caps = _capabilities(upper[start + 12 : end if end > 0 else None])
    else:
        await conn.send(b"C1 CAPABILITY\r\n")
        status, untagged = await _tagged(conn, b"C1")
        if not status.upper().startswith(b"OK"):
            raise failed(f"unexpected reply C1 {shown(status)} to CAPABILITY")
        caps = set()
        for line in untagged:
            if line.upper().startswith(b"* CAPABILITY "):
                caps |= _capabilities(line[13:])
    if b"STARTTLS" not in caps:
        raise not_offered()
    await conn.send(b"S1 STARTTLS\r\n")
    status, _ = await _tagged(conn, b"S1")
    if not status.upper().startswith(b"OK"):
        raise failed(f"unexpected reply {shown(status)} to STARTTLS")
