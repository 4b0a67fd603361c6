"""Observe the certificate chain a TLS server presents without completing the handshake.

    flight = Observer(server_name="shop.example")
    send(flight.client_hello)
    while (seen := flight.feed(receive())) is None:
        pass
    seen.chain_der, seen.tls_version, seen.cipher    # what the server presented
    send(flight.close_alert())                        # then close the socket

This is the pure core of `certloop.tls.fetch`'s fast path (the I/O shell lives there). A full
OpenSSL client handshake costs ~1 ms of CPU here, mostly in the key exchange, the check of the
server's CertificateVerify signature and the Finished messages. To *see* a certificate none of
that is needed:

- TLS 1.0-1.2: the Certificate message is plaintext right behind ServerHello; it is read and
  the connection is dropped.
- TLS 1.3: the server's flight is encrypted with keys from an (EC)DHE exchange. We offer
  X25519 *and* P-256 key shares (the second share costs ~27 µs; a HelloRetryRequest would cost a
  whole OpenSSL fallback; key pairs are reused for a few dozen hellos, see :data:`SHARE_USES`),
  run the key schedule up to the server handshake traffic secret and
  decrypt EncryptedExtensions and Certificate.

**Trade-off, deliberately accepted**: CertificateVerify is not checked and no Finished is sent.
We observe what a server presents; we do not prove that it holds the private key of the leaf.
A server whose key does not match its certificate is therefore not detected on this path
(nginx, haproxy and OpenSSL-based servers refuse to load such a pair, so it does not occur in
practice). Verification of the chain itself is, as before, `certloop.verify`'s offline job.

The offered cipher suites, groups and signature algorithms mirror the OpenSSL path's context
(:func:`certloop.tls.observation_context`), so a server negotiates the same version and cipher
on both paths, and cipher names come from OpenSSL itself. Anything this path does not handle
(HelloRetryRequest, SSL 3.0, an unexpected message, a server alert, a close) raises
:class:`Unsupported`, and the caller repeats the probe through OpenSSL: the fast path never
invents a failure. Only failures OpenSSL would report identically are final
(:class:`Refused`): bytes that are not TLS and a certificate message over OpenSSL's size limit.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from certloop.errors import CertloopError

__all__ = [
    "MAX_CERTIFICATE_MESSAGE",
    "SHARE_LIFETIME",
    "SHARE_USES",
    "VERSION_NAMES",
    "ObserveError",
    "Observed",
    "Observer",
    "Offer",
    "Refused",
    "Unsupported",
]

MAX_CERTIFICATE_MESSAGE: Final = 100 * 1024
"""OpenSSL's default ``max_cert_list``: a larger Certificate message is ``chain_too_large`` on
both paths."""

_MAX_OTHER_MESSAGE: Final = 64 * 1024
"""Any other handshake message larger than this is not something we parse: fall back."""

_MAX_RECORD: Final = 16384 + 2048
"""The largest record TLS allows (ciphertext bound of TLS 1.2; TLS 1.3 allows less)."""

VERSION_NAMES: Final[Mapping[int, str]] = {
    0x0304: "TLS 1.3", 0x0303: "TLS 1.2", 0x0302: "TLS 1.1", 0x0301: "TLS 1.0",
}

# content types, handshake types, extensions, alerts (RFC 8446 / 5246 numbering)
_CHANGE_CIPHER_SPEC, _ALERT, _HANDSHAKE, _APPLICATION_DATA = 20, 21, 22, 23
_SERVER_HELLO, _ENCRYPTED_EXTENSIONS, _CERTIFICATE, _CERTIFICATE_REQUEST = 2, 8, 11, 13
_EXT_SERVER_NAME, _EXT_SUPPORTED_GROUPS, _EXT_EC_POINT_FORMATS, _EXT_SIGNATURE_ALGORITHMS = 0, 10, 11, 13
_EXT_PADDING, _EXT_ENCRYPT_THEN_MAC, _EXT_EXTENDED_MASTER_SECRET = 21, 22, 23
_EXT_SUPPORTED_VERSIONS, _EXT_KEY_SHARE, _EXT_RENEGOTIATION_INFO = 43, 51, 0xFF01
_X25519, _SECP256R1 = 0x001D, 0x0017
_HELLO_RETRY_RANDOM: Final = hashlib.sha256(b"HelloRetryRequest").digest()
_ALERT_NAMES: Final[Mapping[int, str]] = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 47: "illegal_parameter", 50: "decode_error",
    51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
    86: "inappropriate_fallback", 90: "user_canceled", 109: "missing_extension",
    110: "unsupported_extension", 112: "unrecognized_name", 120: "no_application_protocol",
}


def _vector(data: bytes, width: int) -> bytes:
    return len(data).to_bytes(width, "big") + data


def _extension(kind: int, body: bytes) -> bytes:
    return kind.to_bytes(2, "big") + _vector(body, 2)


def _u16s(values: Iterable[int]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)



class ObserveError(CertloopError):
    """The fast path stopped; ``detail`` says why (short, safe to show)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class Unsupported(ObserveError):
    """Something this path does not handle: repeat the probe through OpenSSL."""


class Refused(ObserveError):
    """A final failure that OpenSSL would report the same way.

    ``too_large`` is true for a certificate message over :data:`MAX_CERTIFICATE_MESSAGE` (the
    ``chain_too_large`` reason); otherwise the server did not speak TLS (``handshake``).
    """

    def __init__(self, detail: str, *, too_large: bool = False) -> None:
        self.too_large = too_large
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class Offer:
    """What a ClientHello offers: cipher suites in preference order and their OpenSSL names,
    supported groups and signature algorithms, the protocol versions (highest first).

    The constant parts of the hello are encoded once, here, not per connection."""

    ciphers: tuple[int, ...]
    names: Mapping[int, str]
    groups: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    versions: tuple[int, ...]
    encoded_ciphers: bytes = field(init=False, repr=False)
    encoded_extensions: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoded_ciphers", _vector(_u16s(self.ciphers), 2))
        object.__setattr__(self, "encoded_extensions", b"".join((
            _extension(_EXT_EC_POINT_FORMATS, b"\x03\x00\x01\x02"),
            _extension(_EXT_SUPPORTED_GROUPS, _vector(_u16s(self.groups), 2)),
            _extension(_EXT_ENCRYPT_THEN_MAC, b""),
            _extension(_EXT_EXTENDED_MASTER_SECRET, b""),
            _extension(_EXT_SIGNATURE_ALGORITHMS, _vector(_u16s(self.signature_algorithms), 2)),
            _extension(_EXT_SUPPORTED_VERSIONS, _vector(_u16s(self.versions), 1)),
            _extension(_EXT_RENEGOTIATION_INFO, b"\x00"),
        )))

    def cipher_name(self, code: int) -> str:
        """OpenSSL's name for ``code`` (e.g. ``ECDHE-ECDSA-AES128-GCM-SHA256``), else ``0xC0XX``."""
        return self.names.get(code) or f"0x{code:04X}"


@dataclass(frozen=True, slots=True)
class Observed:
    """What the server presented: the chain as sent (leaf first), the version and cipher."""

    chain_der: tuple[bytes, ...]
    tls_version: str
    cipher: str


# -- TLS 1.3 key schedule (RFC 8446 section 7) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Suite:
    hash_name: str
    key_length: int
    aead: type[AESGCM] | type[ChaCha20Poly1305]

    def digest(self, data: bytes) -> bytes:
        # the named constructors: hashlib.new(name) looks the digest up in OpenSSL 3 on each call
        return (hashlib.sha256 if self.hash_name == "sha256" else hashlib.sha384)(data).digest()


_TLS13_SUITES: Final[Mapping[int, _Suite]] = {
    0x1301: _Suite("sha256", 16, AESGCM),
    0x1302: _Suite("sha384", 32, AESGCM),
    0x1303: _Suite("sha256", 32, ChaCha20Poly1305),
}


def _expand_label(secret: bytes, label: bytes, context: bytes, length: int, hash_name: str) -> bytes:
    """HKDF-Expand-Label for outputs no longer than one hash block (all TLS 1.3 uses here)."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + bytes((len(context),)) + context
    return hmac.digest(secret, info + b"\x01", hash_name)[:length]


def _derived_salt(hash_name: str) -> bytes:
    """Derive-Secret(Early Secret, "derived", "") with no PSK: a constant per hash."""
    size = hashlib.new(hash_name).digest_size
    early = hmac.digest(bytes(size), bytes(size), hash_name)
    return _expand_label(early, b"derived", hashlib.new(hash_name).digest(), size, hash_name)


_DERIVED: Final[Mapping[str, bytes]] = {name: _derived_salt(name) for name in ("sha256", "sha384")}


class _Keys:
    """Handshake traffic keys of one direction, with the record sequence number."""

    __slots__ = ("_aead", "_iv", "_seq")

    def __init__(self, suite: _Suite, secret: bytes) -> None:
        self._aead = suite.aead(_expand_label(secret, b"key", b"", suite.key_length, suite.hash_name))
        self._iv = int.from_bytes(_expand_label(secret, b"iv", b"", 12, suite.hash_name), "big")
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
        header = bytes((_APPLICATION_DATA, 3, 3)) + (len(inner) + 16).to_bytes(2, "big")
        return header + self._aead.encrypt(self._nonce(), inner, header)


# -- ClientHello ---------------------------------------------------------------------------------


def _server_name(name: str) -> bytes:
    host = name.encode("idna") if not name.isascii() else name.encode("ascii")
    return _vector(b"\x00" + _vector(host, 2), 2)


class _Shares:
    """Ephemeral X25519 and P-256 key pairs and their key_share extension."""

    __slots__ = ("expires", "extension", "p256", "uses", "x25519")

    def __init__(self, now: float) -> None:
        self.x25519 = x25519.X25519PrivateKey.generate()
        self.p256 = ec.generate_private_key(ec.SECP256R1())
        x = self.x25519.public_key().public_bytes_raw()
        p = self.p256.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        entries = _X25519.to_bytes(2, "big") + _vector(x, 2) + _SECP256R1.to_bytes(2, "big") + _vector(p, 2)
        self.extension = _extension(_EXT_KEY_SHARE, _vector(entries, 2))
        self.expires = now + SHARE_LIFETIME
        self.uses = 0

    def exchange(self, group: int, peer: bytes) -> bytes:
        """The shared secret with the server's share; ValueError for a bad point."""
        if group == _X25519:
            return self.x25519.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
        if group == _SECP256R1:
            point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer)
            return self.p256.exchange(ec.ECDH(), point)
        raise Unsupported(f"server chose key share group 0x{group:04x}, which was not offered")


SHARE_USES: Final = 64
SHARE_LIFETIME: Final = 10.0
"""Key pairs are reused for at most this many hellos and seconds. Generating both costs ~80 µs,
a tenth of a probe; reuse is harmless here: the keys only protect the server's handshake flight
(certificates, which are public), we send no secrets, and every server share is fresh, so every
connection still gets its own traffic keys. (RFC 8446 advises fresh shares against tracking a
client across connections; a monitoring probe announces itself anyway.)"""



class _SharePool:
    """The key pairs in use: renewed after :data:`SHARE_USES` hellos or :data:`SHARE_LIFETIME`."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: _Shares | None = None

    def take(self) -> _Shares:
        now = time.monotonic()
        shares = self.current
        if shares is None or shares.uses >= SHARE_USES or now >= shares.expires:
            shares = self.current = _Shares(now)
        shares.uses += 1
        return shares


_POOL: Final = _SharePool()


def client_hello(offer: Offer, server_name: str | None, shares: _Shares) -> bytes:
    """The ClientHello handshake message (no record header): random client_random, a 32-byte
    legacy session id (middlebox compatibility), no tickets, PSK, early data or compression."""
    sni = _extension(_EXT_SERVER_NAME, _server_name(server_name)) if server_name else b""
    random = os.urandom(64)
    head = b"\x03\x03" + random[:32] + b"\x20" + random[32:] + offer.encoded_ciphers + b"\x01\x00"
    body = sni + offer.encoded_extensions + shares.extension
    # Like OpenSSL: keep the hello out of 256..511 bytes, which some F5 load balancers mishandle.
    size = 4 + len(head) + 2 + len(body)
    if 256 <= size < 512:
        body += _extension(_EXT_PADDING, bytes(max(512 - size - 4, 1)))
    message = head + _vector(body, 2)
    return b"\x01" + _vector(message, 3)


# -- the server's flight -------------------------------------------------------------------------


class _Reader:
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


def _extensions(data: bytes) -> dict[int, bytes]:
    reader = _Reader(data)
    found: dict[int, bytes] = {}
    while not reader.done:
        kind = reader.number(2)
        found[kind] = reader.vector(2)
    return found


def _certificate_list(body: bytes, *, tls13: bool) -> tuple[bytes, ...]:
    reader = _Reader(body)
    if tls13:
        reader.vector(1)  # certificate_request_context: empty from a server
    entries = _Reader(reader.vector(3))
    if not reader.done:
        raise Unsupported("trailing bytes after the certificate list")
    chain: list[bytes] = []
    while not entries.done:
        chain.append(entries.vector(3))
        if tls13:
            entries.vector(2)  # CertificateEntry extensions (OCSP staple, SCTs): not needed
    return tuple(chain)


class Observer:
    """One observation: the ClientHello to send, then :meth:`feed` the server's bytes.

    ``feed`` returns ``None`` until the Certificate message has been read, then the
    :class:`Observed`; it raises :class:`Unsupported` (repeat through OpenSSL) or
    :class:`Refused` (final). Memory is bounded: a record is at most ~18 KiB, the buffered
    handshake at most one Certificate message (:data:`MAX_CERTIFICATE_MESSAGE`).
    """

    __slots__ = (
        "_cipher",
        "_client_keys",
        "_handshake",
        "_incoming",
        "_offer",
        "_server_keys",
        "_shares",
        "_transcript",
        "_version",
        "client_hello",
    )

    def __init__(self, offer: Offer, server_name: str | None) -> None:
        self._offer = offer
        self._shares = _POOL.take()
        hello = client_hello(offer, server_name, self._shares)
        self._transcript = hello
        # Record version 0x0301 for the first flight, as OpenSSL and browsers send it.
        self.client_hello = b"\x16\x03\x01" + _vector(hello, 2)
        self._incoming = bytearray()
        self._handshake = bytearray()
        self._version = 0
        self._cipher = 0
        self._server_keys: _Keys | None = None
        self._client_keys: _Keys | None = None

    def feed(self, data: bytes) -> Observed | None:
        """Take bytes from the socket; the observation once the chain has been seen."""
        self._incoming += data
        while len(self._incoming) >= 5:
            header = bytes(self._incoming[:5])
            kind, major, size = header[0], header[1], int.from_bytes(header[3:5], "big")
            if kind not in (_CHANGE_CIPHER_SPEC, _ALERT, _HANDSHAKE, _APPLICATION_DATA) or major != 3:
                raise Refused("WRONG_VERSION_NUMBER (the server did not answer with TLS)")
            if size > _MAX_RECORD:
                raise Refused("RECORD_OVERFLOW (a TLS record over the size limit)")
            if len(self._incoming) < 5 + size:
                return None
            body = bytes(self._incoming[5:5 + size])
            del self._incoming[:5 + size]
            try:
                seen = self._record(header, kind, body)
            except (ValueError, IndexError) as exc:  # malformed beyond what the parsers check
                raise Unsupported(f"malformed server flight ({type(exc).__name__})") from exc
            if seen is not None:
                return seen
        return None

    def _record(self, header: bytes, kind: int, body: bytes) -> Observed | None:
        if kind == _ALERT:
            level, code = (body[0], body[1]) if len(body) >= 2 else (0, -1)
            name = _ALERT_NAMES.get(code, str(code))
            raise Unsupported(f"server sent alert {name} (level {level})")
        if self._server_keys is not None:  # TLS 1.3 after ServerHello
            if kind == _CHANGE_CIPHER_SPEC:
                return None  # the middlebox-compatibility dummy
            if kind != _APPLICATION_DATA:
                raise Unsupported("a plaintext record after the TLS 1.3 ServerHello")
            kind, body = self._server_keys.open(header, body)
            if kind == _ALERT:
                raise Unsupported("server sent an encrypted alert")
        if kind != _HANDSHAKE:
            raise Unsupported(f"unexpected record type {kind} during the handshake")
        self._handshake += body
        return self._messages()

    def _messages(self) -> Observed | None:
        while len(self._handshake) >= 4:
            kind = self._handshake[0]
            size = int.from_bytes(self._handshake[1:4], "big")
            if kind == _CERTIFICATE and size > MAX_CERTIFICATE_MESSAGE:
                raise Refused(
                    f"EXCESSIVE_MESSAGE_SIZE (certificate message of {size} bytes)", too_large=True
                )
            if size > _MAX_OTHER_MESSAGE and kind != _CERTIFICATE:
                raise Unsupported(f"handshake message type {kind} of {size} bytes")
            if len(self._handshake) < 4 + size:
                return None
            message = bytes(self._handshake[:4 + size])
            del self._handshake[:4 + size]
            seen = self._message(kind, message)
            if seen is not None:
                return seen
        return None

    def _message(self, kind: int, message: bytes) -> Observed | None:
        body = message[4:]
        if not self._version:
            if kind != _SERVER_HELLO:
                raise Unsupported(f"handshake message type {kind} before ServerHello")
            self._server_hello(message)
            return None
        if kind == _CERTIFICATE:
            tls13 = self._version == 0x0304
            chain = _certificate_list(body, tls13=tls13)
            if not chain:
                raise Unsupported("an empty certificate list")
            return Observed(chain, VERSION_NAMES[self._version], self._offer.cipher_name(self._cipher))
        if self._version == 0x0304 and kind in (_ENCRYPTED_EXTENSIONS, _CERTIFICATE_REQUEST):
            return None
        raise Unsupported(f"handshake message type {kind} where a certificate was expected")

    def _server_hello(self, message: bytes) -> None:
        reader = _Reader(message[4:])
        legacy = reader.number(2)
        random = reader.take(32)
        reader.vector(1)  # legacy_session_id_echo
        self._cipher = reader.number(2)
        reader.take(1)  # compression method
        extensions = _extensions(reader.vector(2)) if not reader.done else {}
        if random == _HELLO_RETRY_RANDOM:
            raise Unsupported("server sent HelloRetryRequest")
        if self._cipher not in self._offer.ciphers:
            raise Unsupported(f"server chose cipher 0x{self._cipher:04x}, which was not offered")
        chosen = extensions.get(_EXT_SUPPORTED_VERSIONS)
        version = int.from_bytes(chosen, "big") if chosen is not None and len(chosen) == 2 else legacy
        if version not in VERSION_NAMES or version not in self._offer.versions:
            raise Unsupported(f"server chose protocol version 0x{version:04x}")
        self._version = version
        if version == 0x0304:
            self._schedule(message, extensions)

    def _schedule(self, server_hello: bytes, extensions: Mapping[int, bytes]) -> None:
        """Derive both handshake traffic keys from the key share and the transcript."""
        suite = _TLS13_SUITES.get(self._cipher)
        share = extensions.get(_EXT_KEY_SHARE)
        if suite is None or share is None or len(share) < 4:
            raise Unsupported("a TLS 1.3 ServerHello this path cannot follow")
        group = int.from_bytes(share[:2], "big")
        peer = _Reader(share[2:]).vector(2)
        try:
            shared = self._shares.exchange(group, peer)
        except ValueError:
            raise Unsupported("server key share is not a valid point") from None
        handshake_secret = hmac.digest(_DERIVED[suite.hash_name], shared, suite.hash_name)
        transcript = suite.digest(self._transcript + server_hello)
        size = len(transcript)
        server = _expand_label(handshake_secret, b"s hs traffic", transcript, size, suite.hash_name)
        client = _expand_label(handshake_secret, b"c hs traffic", transcript, size, suite.hash_name)
        self._server_keys = _Keys(suite, server)
        self._client_keys = _Keys(suite, client)
        if self._handshake:
            raise Unsupported("handshake data behind ServerHello in its plaintext record")

    def close_alert(self) -> bytes:
        """A close_notify alert to send before closing: plaintext before TLS 1.3 keys, else
        encrypted with the client handshake traffic key (what the server expects to read)."""
        alert = b"\x01\x00"  # warning, close_notify
        if self._client_keys is not None:
            return self._client_keys.seal(_ALERT, alert)
        record_version = b"\x03\x03" if self._version >= 0x0303 else self._version.to_bytes(2, "big")
        return bytes((_ALERT,)) + (record_version if self._version else b"\x03\x01") + _vector(alert, 2)
