"""LDAP (RFC 4511 / 4513): the StartTLS extended operation, BER-encoded, and its resultCode."""

from __future__ import annotations

from certloop.plaintext import Plaintext
from certloop.starttls.reply import failed, not_offered, shown

START_TLS_OID = b"1.3.6.1.4.1.1466.20037"
NOTICE_OF_DISCONNECTION_OID = b"1.3.6.1.4.1.1466.20036"
_MESSAGE_ID = 1
_LARGEST_RESPONSE = 16 * 1024

_SEQUENCE = 0x30
_INTEGER = 0x02
_ENUMERATED = 0x0A
_OCTET_STRING = 0x04
_EXTENDED_REQUEST = 0x77  # [APPLICATION 23], constructed
_EXTENDED_RESPONSE = 0x78  # [APPLICATION 24], constructed
_REQUEST_NAME = 0x80  # [0], primitive
_RESPONSE_NAME = 0x8A  # [10], primitive

RESULT_NAMES = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    12: "unavailableCriticalExtension",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    80: "other",
}


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) < 0x80:
        return bytes([tag, len(value)]) + value
    size = len(value).to_bytes((len(value).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + value


START_TLS_REQUEST = _tlv(
    _SEQUENCE,
    _tlv(_INTEGER, bytes([_MESSAGE_ID])) + _tlv(_EXTENDED_REQUEST, _tlv(_REQUEST_NAME, START_TLS_OID)),
)


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """The tag, value and end position of the BER element at ``pos`` (definite lengths only)."""
    if pos + 2 > len(data):
        raise failed("truncated LDAP response")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if not 0 < count <= 4 or pos + count > len(data):
            raise failed("malformed LDAP length")
        size = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        size = first
    if pos + size > len(data):
        raise failed("truncated LDAP response")
    return tag, data[pos : pos + size], pos + size


async def _read_message(conn: Plaintext) -> bytes:
    head = await conn.read_exact(2)
    if head[0] != _SEQUENCE:
        raise failed(f"not an LDAP message (first byte 0x{head[0]:02x})")
    extra = b""
    size = head[1]
    if size & 0x80:
        count = size & 0x7F
        if not 0 < count <= 4:
            raise failed("malformed LDAP length")
        extra = await conn.read_exact(count)
        size = int.from_bytes(extra, "big")
    if size > _LARGEST_RESPONSE:
        raise failed(f"LDAP response of {size} bytes is too large for a StartTLS reply")
    return head + extra + await conn.read_exact(size)


async def negotiate(conn: Plaintext, server_name: str | None) -> None:
    await conn.send(START_TLS_REQUEST)
    _, message, _ = _read_tlv(await _read_message(conn), 0)
    tag, message_id, pos = _read_tlv(message, 0)
    if tag != _INTEGER:
        raise failed("malformed LDAP response (no messageID)")
    tag, response, _ = _read_tlv(message, pos)
    if tag != _EXTENDED_RESPONSE:
        raise failed(f"unexpected LDAP response (protocolOp tag 0x{tag:02x})")
    tag, code_bytes, pos = _read_tlv(response, 0)
    if tag != _ENUMERATED or not code_bytes:
        raise failed("malformed LDAP ExtendedResponse (no resultCode)")
    code = int.from_bytes(code_bytes, "big")
    _, _, pos = _read_tlv(response, pos)  # matchedDN
    _, diagnostic, pos = _read_tlv(response, pos)
    said = f"resultCode {code} ({RESULT_NAMES.get(code, 'error')})" + (
        f": {shown(diagnostic)}" if diagnostic else ""
    )
    if int.from_bytes(message_id, "big") == 0 and NOTICE_OF_DISCONNECTION_OID in response:
        raise failed(f"server sent a notice of disconnection, {said}")
    if code == 0:
        return
    if code in (2, 12):  # the extended operation itself is unknown to the server
        raise not_offered("STARTTLS", said)
    raise failed(f"StartTLS refused: {said}")
