"""Observe the certificate chain a TLS server presents without completing the handshake.

    flight = Observer(server_name="shop.example")
    send(flight.client_hello)
    while (seen := flight.feed(receive())) is None:
        pass
    seen.chain_der, seen.tls_version, seen.cipher    # what the server presented
    send(flight.close_alert())                        # then close the socket

This is the pure core of `certloop.tls.fetch`'s fast path (the I/O shell is in `certloop.tlshandshake`). A full
OpenSSL client handshake spends its CPU mostly in the key exchange, the check of the server's
CertificateVerify signature and the Finished messages (the figures: benchmarks/RESULTS.md, "TLS fetch:
observing the chain instead of a full handshake"). To *see* a certificate none of that is needed:

- TLS 1.0-1.2: the Certificate message is plaintext right behind ServerHello; it is read and
  the connection is dropped.
- TLS 1.3: the server's flight is encrypted with keys from an (EC)DHE exchange. We offer
  X25519 *and* P-256 key shares (the second share costs little next to a HelloRetryRequest, which
  would cost a whole OpenSSL fallback; key pairs are reused for a few dozen hellos, see :data:`SHARE_USES`),
  run the key schedule up to the server handshake traffic secret and
  decrypt EncryptedExtensions and Certificate.

**Trade-off, deliberately accepted**: CertificateVerify is not checked and no Finished is sent.
We observe what a server presents; we do not prove that it holds the private key of the leaf.
A server whose key does not match its certificate is therefore not detected on this path
(nginx, haproxy and OpenSSL-based servers refuse to load such a pair, so it does not occur in
practice). Verification of the chain itself is, as before, `certloop.verify`'s offline job.

The offered cipher suites, groups and signature algorithms mirror the OpenSSL path's context
(:func:`certloop.tlshandshake.observation_context`), so a server negotiates the same version and cipher
on both paths, and cipher names come from OpenSSL itself. Anything this path does not handle
(HelloRetryRequest, SSL 3.0, an unexpected message, a fatal alert, a close) raises
:class:`Unsupported`, and the caller repeats the probe through OpenSSL: the fast path never
invents a failure. Only failures OpenSSL would report identically are final
(:class:`Refused`): bytes that are not TLS and a certificate message over OpenSSL's size limit.
"""

from __future__ import annotations

import hmac
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from certloop.errors import Refused, Unsupported
from certloop.tlswire import (
    ALERT,
    ALERT_NAMES,
    APPLICATION_DATA,
    CERTIFICATE,
    CERTIFICATE_REQUEST,
    CHANGE_CIPHER_SPEC,
    DERIVED,
    ENCRYPTED_EXTENSIONS,
    EXT_EC_POINT_FORMATS,
    EXT_ENCRYPT_THEN_MAC,
    EXT_EXTENDED_MASTER_SECRET,
    EXT_KEY_SHARE,
    EXT_PADDING,
    EXT_RENEGOTIATION_INFO,
    EXT_SERVER_NAME,
    EXT_SIGNATURE_ALGORITHMS,
    EXT_SUPPORTED_GROUPS,
    EXT_SUPPORTED_VERSIONS,
    HANDSHAKE,
    HELLO_RETRY_RANDOM,
    SECP256R1,
    SERVER_HELLO,
    TLS13_SUITES,
    VERSION_NAMES,
    X25519,
    Reader,
    TrafficKeys,
    certificate_list,
    expand_label,
    extension,
    parse_extensions,
    u16s,
    vector,
)

__all__ = [
    "GROUPS",
    "MAX_CERTIFICATE_MESSAGE",
    "SHARE_LIFETIME",
    "SHARE_USES",
    "SIGNATURE_ALGORITHMS",
    "VERSION_NAMES",
    "Observed",
    "Observer",
    "Offer",
    "offer_for",
    "server_hello_version",
]

MAX_CERTIFICATE_MESSAGE: Final = 100 * 1024
"""OpenSSL's default ``max_cert_list``: a larger Certificate message is ``chain_too_large`` on
both paths."""

_MAX_OTHER_MESSAGE: Final = 64 * 1024
"""Any other handshake message larger than this is not something we parse: fall back."""

_WARNING: Final = 1
_CLOSE_NOTIFY: Final = 0
"""Alert level and description. Before TLS 1.3 a warning-level alert other than close_notify does
not end the handshake (RFC 5246 7.2; OpenSSL, GnuTLS and Go read on): servers send
``unrecognized_name`` as a warning when no virtual host matches the SNI and then present their
default certificate. TLS 1.3 treats every alert as fatal whatever its level (RFC 8446 6), so do we."""

_MAX_RECORD: Final = 16384 + 2048
"""The largest record TLS allows (ciphertext bound of TLS 1.2; TLS 1.3 allows less)."""

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
        object.__setattr__(self, "encoded_ciphers", vector(u16s(self.ciphers), 2))
        object.__setattr__(self, "encoded_extensions", b"".join((
            extension(EXT_EC_POINT_FORMATS, b"\x03\x00\x01\x02"),
            extension(EXT_SUPPORTED_GROUPS, vector(u16s(self.groups), 2)),
            extension(EXT_ENCRYPT_THEN_MAC, b""),
            extension(EXT_EXTENDED_MASTER_SECRET, b""),
            extension(EXT_SIGNATURE_ALGORITHMS, vector(u16s(self.signature_algorithms), 2)),
            extension(EXT_SUPPORTED_VERSIONS, vector(u16s(self.versions), 1)),
            extension(EXT_RENEGOTIATION_INFO, b"\x00"),
        )))

    def cipher_name(self, code: int) -> str:
        """OpenSSL's name for ``code`` (e.g. ``ECDHE-ECDSA-AES128-GCM-SHA256``), else ``0xC0XX``."""
        return self.names.get(code) or f"0x{code:04X}"


GROUPS: Final = (0x001D, 0x0017, 0x001E, 0x0019, 0x0018, 0x0100, 0x0101, 0x0102, 0x0103, 0x0104)
"""x25519, secp256r1, x448, secp521r1, secp384r1, ffdhe2048..8192: OpenSSL 3's default list."""

SIGNATURE_ALGORITHMS: Final = (
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0809, 0x080A, 0x080B, 0x0804, 0x0805, 0x0806,
    0x0401, 0x0501, 0x0601, 0x0303, 0x0301, 0x0302, 0x0402, 0x0502, 0x0602, 0x0203, 0x0201, 0x0202,
)
"""ecdsa, ed25519/ed448, rsa_pss (rsae and pss), rsa_pkcs1, then the SHA-224/SHA-1 legacy ones:
OpenSSL 3's client list at security level 0."""


def offer_for(context: ssl.SSLContext) -> Offer:
    """What OpenSSL would offer with ``context``: its cipher suites in its order, named as OpenSSL
    names them, with OpenSSL's default groups and signature algorithms, TLS 1.0 to 1.3."""
    ciphers = context.get_ciphers()
    return Offer(
        ciphers=tuple(int(c["id"]) & 0xFFFF for c in ciphers),
        names={int(c["id"]) & 0xFFFF: str(c["name"]) for c in ciphers},
        groups=GROUPS,
        signature_algorithms=SIGNATURE_ALGORITHMS,
        versions=(0x0304, 0x0303, 0x0302, 0x0301),
    )


@dataclass(frozen=True, slots=True)
class Observed:
    """What the server presented: the chain as sent (leaf first), the version and cipher."""

    chain_der: tuple[bytes, ...]
    tls_version: str
    cipher: str


# -- ClientHello ---------------------------------------------------------------------------------


def _server_name(name: str) -> bytes:
    """The server_name extension body for ``name``, an A-label (`certloop.hostnames.server_name`)."""
    return vector(b"\x00" + vector(name.encode("ascii"), 2), 2)


class _Shares:
    """Ephemeral X25519 and P-256 key pairs and their key_share extension."""

    __slots__ = ("expires", "extension", "p256", "uses", "x25519")

    def __init__(self, now: float) -> None:
        self.x25519 = x25519.X25519PrivateKey.generate()
        self.p256 = ec.generate_private_key(ec.SECP256R1())
        x = self.x25519.public_key().public_bytes_raw()
        p = self.p256.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        entries = X25519.to_bytes(2, "big") + vector(x, 2) + SECP256R1.to_bytes(2, "big") + vector(p, 2)
        self.extension = extension(EXT_KEY_SHARE, vector(entries, 2))
        self.expires = now + SHARE_LIFETIME
        self.uses = 0

    def exchange(self, group: int, peer: bytes) -> bytes:
        """The shared secret with the server's share; ValueError for a bad point."""
        if group == X25519:
            return self.x25519.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
        if group == SECP256R1:
            point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer)
            return self.p256.exchange(ec.ECDH(), point)
        raise Unsupported(f"server chose key share group 0x{group:04x}, which was not offered")


SHARE_USES: Final = 64
SHARE_LIFETIME: Final = 10.0
"""Key pairs are reused for at most this many hellos and seconds, because generating both is a visible
part of a probe's CPU (benchmarks/RESULTS.md, "TLS fetch: observing the chain instead of a full
handshake"); reuse is harmless here: the keys only protect the server's handshake flight
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


class _RandomPool:
    """Bytes from ``os.urandom``, read a block at a time: one system call per many hellos, not one
    per hello. The bytes are the kernel's CSPRNG output, each used once (in this process: a forked
    child starts with an empty pool)."""

    __slots__ = ("_block", "_used")

    BLOCK: Final = 64 * 256

    def __init__(self) -> None:
        self._block = b""
        self._used = 0

    def reset(self) -> None:
        self._block, self._used = b"", 0

    def take(self, n: int) -> bytes:
        if self._used + n > len(self._block):
            self._block, self._used = os.urandom(max(self.BLOCK, n)), 0
        start = self._used
        self._used = start + n
        return self._block[start:start + n]


_RANDOM: Final = _RandomPool()
os.register_at_fork(after_in_child=_RANDOM.reset)  # a child never reuses its parent's bytes


def client_hello(offer: Offer, server_name: str | None, shares: _Shares) -> bytes:
    """The ClientHello handshake message (no record header): random client_random, a 32-byte
    legacy session id (middlebox compatibility), no tickets, PSK, early data or compression."""
    sni = extension(EXT_SERVER_NAME, _server_name(server_name)) if server_name else b""
    random = _RANDOM.take(64)
    head = b"\x03\x03" + random[:32] + b"\x20" + random[32:] + offer.encoded_ciphers + b"\x01\x00"
    body = sni + offer.encoded_extensions + shares.extension
    # Like OpenSSL: keep the hello out of 256..511 bytes, which some F5 load balancers mishandle.
    size = 4 + len(head) + 2 + len(body)
    if 256 <= size < 512:
        body += extension(EXT_PADDING, bytes(max(512 - size - 4, 1)))
    message = head + vector(body, 2)
    return b"\x01" + vector(message, 3)


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
        "_warnings",
        "client_hello",
    )

    def __init__(self, offer: Offer, server_name: str | None) -> None:
        """``server_name``: the SNI as an A-label (`certloop.hostnames.server_name`), or None."""
        self._offer = offer
        self._shares = _POOL.take()
        hello = client_hello(offer, server_name, self._shares)
        self._transcript = hello
        # Record version 0x0301 for the first flight, as OpenSSL and browsers send it.
        self.client_hello = b"\x16\x03\x01" + vector(hello, 2)
        self._incoming = bytearray()
        self._handshake = bytearray()
        self._version = 0
        self._warnings = 0
        self._cipher = 0
        self._server_keys: TrafficKeys | None = None
        self._client_keys: TrafficKeys | None = None

    def feed(self, data: bytes) -> Observed | None:
        """Take bytes from the socket; the observation once the chain has been seen."""
        self._incoming += data
        while len(self._incoming) >= 5:
            header = bytes(self._incoming[:5])
            kind, major, size = header[0], header[1], int.from_bytes(header[3:5], "big")
            if kind not in (CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA) or major != 3:
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
        if kind == ALERT:
            level, code = (body[0], body[1]) if len(body) == 2 else (0, -1)
            if level == _WARNING and code != _CLOSE_NOTIFY and self._version != 0x0304 and self._warnings < 4:
                self._warnings += 1  # bounded as OpenSSL bounds them (5 in a row is fatal there)
                return None  # e.g. unrecognized_name before ServerHello: OpenSSL reads on, so do we
            name = ALERT_NAMES.get(code, str(code))
            raise Unsupported(f"server sent alert {name} (level {level})")
        if self._server_keys is not None:  # TLS 1.3 after ServerHello
            if kind == CHANGE_CIPHER_SPEC:
                return None  # the middlebox-compatibility dummy
            if kind != APPLICATION_DATA:
                raise Unsupported("a plaintext record after the TLS 1.3 ServerHello")
            kind, body = self._server_keys.open(header, body)
            if kind == ALERT:
                raise Unsupported("server sent an encrypted alert")
        if kind != HANDSHAKE:
            raise Unsupported(f"unexpected record type {kind} during the handshake")
        self._handshake += body
        return self._messages()

    def _messages(self) -> Observed | None:
        while len(self._handshake) >= 4:
            kind = self._handshake[0]
            size = int.from_bytes(self._handshake[1:4], "big")
            if kind == CERTIFICATE and size > MAX_CERTIFICATE_MESSAGE:
                raise Refused(
                    f"EXCESSIVE_MESSAGE_SIZE (certificate message of {size} bytes)", too_large=True
                )
            if size > _MAX_OTHER_MESSAGE and kind != CERTIFICATE:
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
            if kind != SERVER_HELLO:
                raise Unsupported(f"handshake message type {kind} before ServerHello")
            self._server_hello(message)
            return None
        if kind == CERTIFICATE:
            tls13 = self._version == 0x0304
            chain = certificate_list(body, tls13=tls13)
            if not chain:
                raise Unsupported("an empty certificate list")
            return Observed(chain, VERSION_NAMES[self._version], self._offer.cipher_name(self._cipher))
        if self._version == 0x0304 and kind in (ENCRYPTED_EXTENSIONS, CERTIFICATE_REQUEST):
            return None
        raise Unsupported(f"handshake message type {kind} where a certificate was expected")

    def _server_hello(self, message: bytes) -> None:
        reader = Reader(message[4:])
        legacy = reader.number(2)
        random = reader.take(32)
        reader.vector(1)  # legacy_session_id_echo
        self._cipher = reader.number(2)
        reader.take(1)  # compression method
        extensions = parse_extensions(reader.vector(2)) if not reader.done else {}
        if random == HELLO_RETRY_RANDOM:
            raise Unsupported("server sent HelloRetryRequest")
        if self._cipher not in self._offer.ciphers:
            raise Unsupported(f"server chose cipher 0x{self._cipher:04x}, which was not offered")
        chosen = extensions.get(EXT_SUPPORTED_VERSIONS)
        version = int.from_bytes(chosen, "big") if chosen is not None and len(chosen) == 2 else legacy
        if version not in VERSION_NAMES or version not in self._offer.versions:
            raise Unsupported(f"server chose protocol version 0x{version:04x}")
        self._version = version
        if version == 0x0304:
            self._schedule(message, extensions)

    def _schedule(self, server_hello: bytes, extensions: Mapping[int, bytes]) -> None:
        """Derive both handshake traffic keys from the key share and the transcript."""
        suite = TLS13_SUITES.get(self._cipher)
        share = extensions.get(EXT_KEY_SHARE)
        if suite is None or share is None or len(share) < 4:
            raise Unsupported("a TLS 1.3 ServerHello this path cannot follow")
        group = int.from_bytes(share[:2], "big")
        peer = Reader(share[2:]).vector(2)
        try:
            shared = self._shares.exchange(group, peer)
        except ValueError:
            raise Unsupported("server key share is not a valid point") from None
        handshake_secret = hmac.digest(DERIVED[suite.hash_name], shared, suite.hash_name)
        transcript = suite.digest(self._transcript + server_hello)
        size = len(transcript)
        server = expand_label(handshake_secret, b"s hs traffic", transcript, size, suite.hash_name)
        client = expand_label(handshake_secret, b"c hs traffic", transcript, size, suite.hash_name)
        self._server_keys = TrafficKeys(suite, server)
        self._client_keys = TrafficKeys(suite, client)
        if self._handshake:
            raise Unsupported("handshake data behind ServerHello in its plaintext record")

    def close_alert(self) -> bytes:
        """A close_notify alert to send before closing: plaintext before TLS 1.3 keys, else
        encrypted with the client handshake traffic key (what the server expects to read)."""
        alert = b"\x01\x00"  # warning, close_notify
        if self._client_keys is not None:
            return self._client_keys.seal(ALERT, alert)
        record_version = b"\x03\x03" if self._version >= 0x0303 else self._version.to_bytes(2, "big")
        return bytes((ALERT,)) + (record_version if self._version else b"\x03\x01") + vector(alert, 2)


def server_hello_version(flight: bytes) -> str:
    """The protocol version the ServerHello at the start of ``flight`` (the server's bytes as
    received) chose, e.g. ``TLS 1.2``; ``""`` when the flight does not start with one.

    For a handshake OpenSSL abandoned after the server's first flight (a server that requires a
    client certificate refuses ours with an alert): ``SSLObject.version()`` is None until the
    handshake completes, yet the server's choice is on the wire in plaintext."""
    handshake = bytearray()
    rest = memoryview(flight)
    while len(rest) >= 5 and len(handshake) < 4:
        kind, size = rest[0], int.from_bytes(rest[3:5], "big")
        if kind == HANDSHAKE:
            handshake += rest[5:5 + size]
        elif kind != ALERT:  # warnings may precede it; anything else means no plaintext ServerHello
            return ""
        rest = rest[5 + size:]
    if len(handshake) < 4 or handshake[0] != SERVER_HELLO:
        return ""
    size = int.from_bytes(handshake[1:4], "big")
    while len(handshake) < 4 + size and len(rest) >= 5 and rest[0] == HANDSHAKE:
        handshake += rest[5:5 + int.from_bytes(rest[3:5], "big")]
        rest = rest[5 + int.from_bytes(rest[3:5], "big"):]
    try:
        reader = Reader(bytes(handshake[4:4 + size]))
        legacy = reader.number(2)
        reader.take(32)
        reader.vector(1)
        reader.take(3)  # cipher suite, compression method
        extensions = parse_extensions(reader.vector(2)) if not reader.done else {}
    except (Unsupported, IndexError):
        return ""
    chosen = extensions.get(EXT_SUPPORTED_VERSIONS)
    version = int.from_bytes(chosen, "big") if chosen is not None and len(chosen) == 2 else legacy
    return VERSION_NAMES.get(version, "")
