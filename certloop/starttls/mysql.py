"""MySQL/MariaDB: read the server's initial handshake packet, check the CLIENT_SSL capability,
send the 32-byte SSL request packet, then TLS starts."""

from __future__ import annotations

import struct

from certloop.plaintext import Plaintext
from certloop.starttls.reply import failed, not_offered, shown

CLIENT_LONG_PASSWORD = 0x1
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_SECURE_CONNECTION = 0x8000
_MAX_PACKET = 16 * 1024 * 1024
_UTF8MB4_GENERAL_CI = 45
_LARGEST_GREETING = 8 * 1024


def _capabilities(payload: bytes) -> int:
    """Capability flags of a protocol-10 handshake packet."""
    end = payload.find(b"\x00", 1)  # server version, NUL-terminated
    if end < 0:
        raise failed("malformed handshake packet (no server version terminator)")
    pos = end + 1 + 4 + 8 + 1  # connection id, auth-plugin-data part 1, filler
    if len(payload) < pos + 2:
        raise failed("malformed handshake packet (truncated before capabilities)")
    (low,) = struct.unpack_from("<H", payload, pos)
    high = 0
    if len(payload) >= pos + 2 + 1 + 2 + 2:  # charset, status flags, upper capabilities
        (high,) = struct.unpack_from("<H", payload, pos + 5)
    return int(low | (high << 16))


async def negotiate(conn: Plaintext, server_name: str | None) -> None:
    header = await conn.read_exact(4)
    length = int.from_bytes(header[:3], "little")
    if length > _LARGEST_GREETING:
        raise failed(f"handshake packet of {length} bytes is not a MySQL greeting")
    payload = await conn.read_exact(length)
    if not payload:
        raise failed("empty handshake packet")
    if payload[0] == 0xFF:  # ERR packet: the server refuses us before any handshake
        code = int.from_bytes(payload[1:3], "little") if len(payload) >= 3 else 0
        raise failed(f"server refused the connection: error {code} {shown(payload[3:])}")
    if payload[0] != 10:
        raise failed(f"unexpected handshake protocol version {payload[0]}")
    if not _capabilities(payload) & CLIENT_SSL:
        raise not_offered("TLS", "no CLIENT_SSL capability")
    flags = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION
    body = struct.pack("<IIB23x", flags, _MAX_PACKET, _UTF8MB4_GENERAL_CI)
    sequence = (header[3] + 1) & 0xFF
    await conn.send(len(body).to_bytes(3, "little") + bytes([sequence]) + body)
