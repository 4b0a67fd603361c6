"""TLS wire format for `certloop.tlsobserve`: constants, encoders, bounded readers, the TLS 1.3
handshake key schedule (RFC 8446 section 7) and record protection. Pure: no I/O, no state
beyond one direction's traffic keys.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from certloop.errors import Unsupported

__all__ = [
    "ALERT", "ALERT_NAMES", "APPLICATION_DATA", "CERTIFICATE", "CERTIFICATE_REQUEST", "CHANGE_CIPHER_SPEC",
    "DERIVED", "ENCRYPTED_EXTENSIONS", "EXT_EC_POINT_FORMATS", "EXT_ENCRYPT_THEN_MAC", "EXT_EXTENDED_MASTER_SECRET",
    "EXT_KEY_SHARE", "EXT_PADDING", "EXT_RENEGOTIATION_INFO", "EXT_SERVER_NAME", "EXT_SIGNATURE_ALGORITHMS",
    "EXT_SUPPORTED_GROUPS", "EXT_SUPPORTED_VERSIONS", "HANDSHAKE", "HELLO_RETRY_RANDOM", "SECP256R1", "SERVER_HELLO",
    "TLS13_SUITES", "VERSION_NAMES", "X25519", "Reader", "Suite", "TrafficKeys", "certificate_list", "expand_label",
    "extension", "parse_extensions", "u16s", "vector",
]

VERSION_NAMES: Final[Mapping[int, str]] = {
    0x0304: "TLS 1.3", 0x0303: "TLS 1.2", 0x0302: "TLS 1.1", 0x0301: "TLS 1.0",
}

# content types, handshake types, extensions, alerts (RFC 8446 / 5246 numbering)
CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
SERVER_HELLO, ENCRYPTED_EXTENSIONS, CERTIFICATE, CERTIFICATE_REQUEST = 2, 8, 11, 13
EXT_SERVER_NAME, EXT_SUPPORTED_GROUPS, EXT_EC_POINT_FORMATS, EXT_SIGNATURE_ALGORITHMS = 0, 10, 11, 13
EXT_PADDING, EXT_ENCRYPT_THEN_MAC, EXT_EXTENDED_MASTER_SECRET = 21, 22, 23
EXT_SUPPORTED_VERSIONS, EXT_KEY_SHARE, EXT_RENEGOTIATION_INFO = 43, 51, 0xFF01
X25519, SECP256R1 = 0x001D, 0x0017
HELLO_RETRY_RANDOM: Final = hashlib.sha256(b"HelloRetryRequest").digest()
ALERT_NAMES: Final[Mapping[int, str]] = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 47: "illegal_parameter", 50: "decode_error",
    51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
    86: "inappropriate_fallback", 90: "user_canceled", 109: "missing_extension",
    110: "unsupported_extension", 112: "unrecognized_name", 120: "no_application_protocol",
}


def vector(data: bytes, width: int) -> bytes:
    return len(data).to_bytes(width, "big") + data


def extension(kind: int, body: bytes) -> bytes:
    return kind.to_bytes(2, "big") + vector(body, 2)


def u16s(values: Iterable[int]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


# -- TLS 1.3 key schedule (RFC 8446 section 7) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suite:
    hash_name: str
    key_length: int
    aead: type[AESGCM] | type[ChaCha20Poly1305]

    def digest(self, data: bytes) -> bytes:
        # the named constructors: hashlib.new(name) looks the digest up in OpenSSL 3 on each call
        return (hashlib.sha256 if self.hash_name == "sha256" else hashlib.sha384)(data).digest()


TLS13_SUITES: Final[Mapping[int, Suite]] = {
    0x1301: Suite("sha256", 16, AESGCM),
    0x1302: Suite("sha384", 32, AESGCM),
    0x1303: Suite("sha256", 32, ChaCha20Poly1305),
}


def expand_label(secret: bytes, label: bytes, context: bytes, length: int, hash_name: str) -> bytes:
    """HKDF-Expand-Label for outputs no longer than one hash block (all TLS 1.3 uses here)."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + bytes((len(context),)) + context
    return hmac.digest(secret, info + b"\x01", hash_name)[:length]


def _derived_salt(hash_name: str) -> bytes:
    """Derive-Secret(Early Secret, "derived", "") with no PSK: a constant per hash."""
    size = hashlib.new(hash_name).digest_size
    early = hmac.digest(bytes(size), bytes(size), hash_name)
    return expand_label(early, b"derived", hashlib.new(hash_name).digest(), size, hash_name)


DERIVED: Final[Mapping[str, bytes]] = {name: _derived_salt(name) for name in ("sha256", "sha384")}


class TrafficKeys:
    """Handshake traffic keys of one direction, with the record sequence number."""

    __slots__ = ("_aead", "_iv", "_seq")

    def __init__(self, suite: Suite, secret: bytes) -> None:
        self._aead = suite.aead(expand_label(secret, b"key", b"", suite.key_length, suite.hash_name))
        self._iv = int.from_bytes(expand_label(secret, b"iv", b"", 12, suite.hash_name), "big")
        self._seq = 0

    def _nonce(self) -> bytes:
        nonce = (self._iv ^ self._seq).to_bytes(12, "big")
        self._seq += 1
        return nonce

    def open(self, header: bytes, body: bytes) -> tuple[int, bytes]:
        """Decrypt one record: ``(inner content type, content)``."""
        try:
            plain = self._aead.decrypt(self._nonce(), body, header)
        except (InvalidTag, ValueError):
            raise Unsupported("a TLS 1.3 record did not decrypt") from None
        end = len(plain.rstrip(b"\x00"))
        if not end:
            raise Unsupported("a TLS 1.3 record without a content type")
        return plain[end - 1], plain[: end - 1]

    def seal(self, content_type: int, content: bytes) -> bytes:
        inner = content + bytes((content_type,))
        header = bytes((APPLICATION_DATA, 3, 3)) + (len(inner) + 16).to_bytes(2, "big")
        return header + self._aead.encrypt(self._nonce(), inner, header)


# -- the server's flight -------------------------------------------------------------------------


class Reader:
    """Bounds-checked reads from one handshake message body."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise Unsupported("a truncated handshake message")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def number(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def vector(self, width: int) -> bytes:
        return self.take(self.number(width))

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


def parse_extensions(data: bytes) -> dict[int, bytes]:
    reader = Reader(data)
    found: dict[int, bytes] = {}
    while not reader.done:
        kind = reader.number(2)
        found[kind] = reader.vector(2)
    return found


def certificate_list(body: bytes, *, tls13: bool) -> tuple[bytes, ...]:
    reader = Reader(body)
    if tls13:
        reader.vector(1)  # certificate_request_context: empty from a server
    entries = Reader(reader.vector(3))
    if not reader.done:
        raise Unsupported("trailing bytes after the certificate list")
    chain: list[bytes] = []
    while not entries.done:
        chain.append(entries.vector(3))
        if tls13:
            entries.vector(2)  # CertificateEntry extensions (OCSP staple, SCTs): not needed
    return tuple(chain)
