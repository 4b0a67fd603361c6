"""SMTP (RFC 3207): greeting 220, EHLO, look for the STARTTLS extension, STARTTLS, expect 220."""

from __future__ import annotations

from certloop.plaintext import Plaintext
from certloop.starttls.reply import failed, not_offered, shown

_MAX_LINES = 100
EHLO = b"EHLO certloop.invalid\r\n"


async def read_reply(conn: Plaintext) -> tuple[int, list[bytes]]:
    """One (possibly multi-line ``250-...``/``250 ...``) reply: its code and the text of each line."""
    texts: list[bytes] = []
    while len(texts) < _MAX_LINES:
        line = await conn.read_line()
        code, sep = line[:3], line[3:4]
        if not code.isdigit() or sep not in (b"", b" ", b"-"):
            raise failed(f"malformed reply {shown(line)!r}")
        texts.append(line[4:])
        if sep != b"-":
            return int(code), texts
    raise failed(f"reply longer than {_MAX_LINES} lines")


async def negotiate(conn: Plaintext, server_name: str | None) -> None:
    code, text = await read_reply(conn)
    if code != 220:
        raise failed(f"unexpected greeting {code} {shown(text[0])}")
    await conn.send(EHLO)
    code, text = await read_reply(conn)
    if code != 250:
        raise failed(f"unexpected reply {code} {shown(text[0])} to EHLO")
    extensions = {line.split(b" ", 1)[0].upper() for line in text[1:]}
    if b"STARTTLS" not in extensions:
        raise not_offered()
    await conn.send(b"STARTTLS\r\n")
    code, text = await read_reply(conn)
    if code != 220:
        raise failed(f"unexpected reply {code} {shown(text[0])} to STARTTLS")
