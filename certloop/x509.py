"""Certificate facts: parse PEM, DER and PKCS#12 into certificates, and describe each one.

Pure apart from :func:`read_certificate_file` and :func:`read_bounded`, which touch the file system
(one open, ``fstat`` and a bounded read). Parsing never lets one bad entry hide the others: every parser returns
the certificates it could read plus a :class:`Problem` per entry it could not.

    parsed = read_certificate_file("/etc/ssl/shop.pem")      # raises FileError when nothing usable
    for cert in parsed.certificates:
        f = facts(cert)                                       # cached by certificate (DER equality)
        print(f.subject, f.not_after, f.weak_crypto)
    roles = chain_roles(parsed.certificates)                  # (Role.LEAF, Role.INTERMEDIATE, ...)

Performance: :func:`facts` (about 35-45 us uncached, 1.3 us cached) and :func:`load_der_chain` keep
bounded caches keyed by the certificate / its DER bytes, so re-probing an unchanged endpoint parses
and describes nothing twice. ``facts`` decodes the extensions in one pass and caches names and keys
by their DER (an issuer's name, a shared key: decoded once); the same PEM block in many files (an
intermediate in every fullchain) and identical file contents (:func:`certificates_in`) parse once.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import SignatureAlgorithmOID

from certloop.der import TbsFields, simple_name_text, tbs_of
from certloop.errors import CertloopError

__all__ = [
    "MAX_FILE_BYTES",
    "CertFacts",
    "FileError",
    "FileReason",
    "Parsed",
    "Problem",
    "Role",
    "certificates_in",
    "chain_roles",
    "der_bytes",
    "facts",
    "load_der_chain",
    "parse_certificates",
    "parse_der",
    "parse_ip",
    "parse_pem",
    "parse_pkcs12",
    "read_bounded",
    "read_certificate_file",
    "reason_for_errno",
    "tbs_fields",
    "to_pem",
]

MAX_FILE_BYTES = 16 * 1024 * 1024
_CACHE_SIZE = 16_384  # certificates (~2-3 KB each with their DER): bounds memory, fits an inventory


class FileReason(StrEnum):
    """Why a certificate file yielded no certificate. A fixed set: used as a metric label value."""

    NOT_FOUND = "not_found"
    PERMISSION_DENIED = "permission_denied"
    NOT_A_FILE = "not_a_file"
    SYMLINK_LOOP = "symlink_loop"
    TOO_LARGE = "too_large"
    EMPTY = "empty"
    NO_CERTIFICATE = "no_certificate"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 -- a reason label, not a secret
    PARSE_ERROR = "parse_error"
    UNREADABLE = "unreadable"


class FileError(CertloopError):
    """A certificate file could not be used at all. ``reason`` is from :class:`FileReason`."""

    def __init__(self, path: str, reason: FileReason, detail: str = "") -> None:
        self.path = path
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


class Role(StrEnum):
    """A certificate's place in a presented chain."""

    LEAF = "leaf"
    INTERMEDIATE = "intermediate"
    ROOT = "root"


@dataclass(frozen=True, slots=True)
class Problem:
    """One entry that could not be read. ``index`` counts entries of its kind from 0 (PEM blocks, bags)."""

    index: int
    kind: str  # "certificate", "private_key", "pkcs12", "der"
    reason: FileReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a blob or file contained: certificates in order, how many private keys, and problems."""

    certificates: tuple[x509.Certificate, ...]
    keys: int = 0
    problems: tuple[Problem, ...] = ()


# --------------------------------------------------------------------------------------------- parsing

_BEGIN = b"-----BEGIN "
_DASHES = b"-----"
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_MAX_LABEL = 64


def _pem_blocks(data: bytes) -> Iterator[tuple[bytes, bytes | None]]:
    """(label, block) for each ``-----BEGIN label-----`` in order; block is None when it has no END.

    A linear scan (no backtracking regular expression), so a hostile file full of unterminated
    BEGIN lines costs time in proportion to its size.
    """
    pos = data.find(_BEGIN)
    while pos != -1:
        label_start = pos + len(_BEGIN)
        label_end = data.find(_DASHES, label_start, label_start + _MAX_LABEL)
        if label_end == -1:
            pos = data.find(_BEGIN, label_start)
            continue
        label = data[label_start:label_end]
        end_marker = b"-----END " + label + _DASHES
        next_begin = data.find(_BEGIN, label_end)
        end = data.find(end_marker, label_end, next_begin if next_begin != -1 else len(data))
        if end == -1:
            yield label, None
            pos = next_begin
            continue
        yield label, data[pos : end + len(end_marker)]
        pos = data.find(_BEGIN, end + len(end_marker))


def parse_pem(data: bytes) -> Parsed:
    """Every ``CERTIFICATE`` block of a PEM text, in order; keys are counted, other blocks ignored.

    Text between blocks (comments, garbage, ``openssl x509 -text`` output) is skipped. A block
    that does not decode, or lacks its END line, becomes a :class:`Problem` and the following
    blocks are still read.
    """
    certs: list[x509.Certificate] = []
    problems: list[Problem] = []
    keys = 0
    index = 0
    for label, block in _pem_blocks(data):
        if label in _CERT_LABELS:
            if block is None:
                problems.append(Problem(index, "certificate", FileReason.PARSE_ERROR, "no END line"))
            else:
                try:
                    certs.append(_pem_cached(block, label))
                except ValueError as exc:
                    problems.append(Problem(index, "certificate", FileReason.PARSE_ERROR, _short(exc)))
            index += 1
        elif label.endswith(b"PRIVATE KEY"):
            keys += 1
    return Parsed(tuple(certs), keys, tuple(problems))


def parse_der(data: bytes) -> Parsed:
    """A single DER-encoded certificate."""
    try:
        return Parsed((_der_cached(bytes(data)),))
    except ValueError as exc:
        return Parsed((), 0, (Problem(0, "der", FileReason.PARSE_ERROR, _short(exc)),))


def parse_pkcs12(data: bytes, password: bytes | None) -> Parsed:
    """The key's certificate first, then the additional certificates of a PKCS#12 archive."""
    try:
        p12 = pkcs12.load_pkcs12(data, password)
    except ValueError as exc:
        text = str(exc).lower()
        reason = FileReason.WRONG_PASSWORD if "password" in text or "mac" in text else FileReason.PARSE_ERROR
        return Parsed((), 0, (Problem(0, "pkcs12", reason, _short(exc)),))
    except (TypeError, UnsupportedAlgorithm) as exc:
        return Parsed((), 0, (Problem(0, "pkcs12", FileReason.PARSE_ERROR, _short(exc)),))
    certs = [c.certificate for c in ([p12.cert] if p12.cert is not None else []) + list(p12.additional_certs)]
    return Parsed(tuple(certs), 1 if p12.key is not None else 0)


def parse_certificates(data: bytes, *, password: bytes | None = None) -> Parsed:
    """Detect the format (PEM, DER certificate, PKCS#12) and parse.

    PEM is recognised by its armour; a binary blob is tried as a DER certificate, then as PKCS#12
    (with ``password``, ``None`` meaning no password). Problems explain an empty result.
    """
    if not data.strip():
        return Parsed((), 0, (Problem(0, "file", FileReason.EMPTY),))
    if b"-----BEGIN " in data:
        return parse_pem(data)
    der = parse_der(data)
    if der.certificates:
        return der
    p12 = parse_pkcs12(data, password)
    if p12.certificates or (p12.problems and p12.problems[0].reason is FileReason.WRONG_PASSWORD):
        return p12
    if p12.keys:  # an archive with only a key
        return p12
    return Parsed((), 0, (Problem(0, "file", FileReason.NO_CERTIFICATE, "neither PEM, DER nor PKCS#12"),))


def read_certificate_file(
    path: str | os.PathLike[str], *, password: bytes | None = None, max_bytes: int = MAX_FILE_BYTES
) -> Parsed:
    """Read and parse a certificate file, reading at most ``max_bytes`` (+1 to detect larger files).

    Raises :class:`FileError` when the file yields no certificate; otherwise returns the
    certificates and any per-entry problems. FIFOs and devices are refused without blocking.
    """
    name = os.fspath(path)
    data, _ = read_bounded(name, max_bytes)
    return certificates_in(name, data, password=password)


def read_bounded(path: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file and the ``fstat`` of what was read: one open, usually one read.

    Raises :class:`FileError` for a missing, special, unreadable or larger-than-``max_bytes`` file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileError(path, reason_for_errno(exc.errno or 0), exc.strerror or "") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileError(path, FileReason.NOT_A_FILE)
        if st.st_size > max_bytes:
            raise FileError(path, FileReason.TOO_LARGE, f"{st.st_size} bytes > {max_bytes}")
        # one byte more than fstat promised: a short read is the end; a full one means it grew
        want = min(st.st_size + 1, max_bytes + 1)
        data = os.read(fd, want)
        if len(data) == want and len(data) <= max_bytes:
            chunks = [data]
            remaining = max_bytes + 1 - len(data)
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            data = b"".join(chunks)
    except OSError as exc:
        raise FileError(path, reason_for_errno(exc.errno or 0), exc.strerror or "") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew while we read
        raise FileError(path, FileReason.TOO_LARGE, f"more than {max_bytes} bytes")
    return data, st


_CONTENT_CACHE: dict[tuple[bytes, bytes | None], Parsed] = {}


def certificates_in(name: str, data: bytes, *, password: bytes | None = None) -> Parsed:
    """:func:`parse_certificates` for a file's bytes; FileError (naming ``name``) when none is usable.

    Identical contents (a bundle copied to several places, a file rewritten unchanged) parse once.
    """
    key = (hashlib.sha256(data).digest(), password)
    parsed = _CONTENT_CACHE.get(key)
    if parsed is not None:
        return parsed
    parsed = parse_certificates(data, password=password)
    if not parsed.certificates:
        if parsed.problems:
            first = parsed.problems[0]
            raise FileError(name, first.reason, first.detail)
        raise FileError(name, FileReason.NO_CERTIFICATE)
    return _remember(_CONTENT_CACHE, key, parsed)


def reason_for_errno(code: int) -> FileReason:
    """The FileReason for an OS error number (the one mapping, shared with the exporter's file sweep)."""
    return {
        errno.ENOENT: FileReason.NOT_FOUND,
        errno.ENOTDIR: FileReason.NOT_FOUND,
        errno.EACCES: FileReason.PERMISSION_DENIED,
        errno.EPERM: FileReason.PERMISSION_DENIED,
        errno.ELOOP: FileReason.SYMLINK_LOOP,
        errno.EISDIR: FileReason.NOT_A_FILE,
        errno.ENXIO: FileReason.NOT_A_FILE,
    }.get(code, FileReason.UNREADABLE)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


# --------------------------------------------------------------------------------------------- caches

K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: dict[K, V], key: K, value: V) -> V:
    if len(cache) >= _CACHE_SIZE:
        # Evict the oldest tenth: cheap, and a steady inventory never reaches the limit.
        for old in list(cache)[: _CACHE_SIZE // 10]:
            cache.pop(old, None)
    cache[key] = value
    return value


_DER_CACHE: dict[bytes, x509.Certificate] = {}


def _der_cached(der: bytes) -> x509.Certificate:
    cert = _DER_CACHE.get(der)
    if cert is None:
        cert = _remember(_DER_CACHE, der, x509.load_der_x509_certificate(der))
    return cert


_PEM_CACHE: dict[bytes, x509.Certificate] = {}


def _pem_cached(block: bytes, label: bytes) -> x509.Certificate:
    """A PEM block's certificate; the same block in many files (a shared intermediate) parses once."""
    cert = _PEM_CACHE.get(block)
    if cert is None:
        pem = block if label == b"CERTIFICATE" else block.replace(label, b"CERTIFICATE")
        cert = _remember(_PEM_CACHE, block, x509.load_pem_x509_certificate(pem))
    return cert


def load_der_chain(chain_der: Iterable[bytes]) -> tuple[x509.Certificate, ...]:
    """Parse a presented chain (DER, leaf first), reusing certificates seen before.

    Raises ``ValueError`` for an undecodable certificate (the TLS layer decides what that means).
    """
    return tuple(_der_cached(bytes(d)) for d in chain_der)


# --------------------------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class CertFacts:
    """What certloop reports about one certificate. Datetimes are aware UTC."""

    subject: str
    issuer: str
    serial: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    key_type: str  # rsa | ecdsa | ed25519 | ed448 | dsa | unknown
    key_bits: int
    signature_algorithm: str  # e.g. sha256-rsa, sha384-ecdsa, ed25519, sha256-rsapss
    fingerprint_sha256: str
    ski: str | None
    aki: str | None
    is_ca: bool
    self_issued: bool
    weak_crypto: bool

    @property
    def names(self) -> tuple[str, ...]:
        """DNS names then IP addresses from the SAN extension."""
        return self.dns_names + self.ip_addresses


_SIG_NAMES: dict[x509.ObjectIdentifier, str] = {
    SignatureAlgorithmOID.RSA_WITH_MD5: "md5-rsa",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "sha1-rsa",
    SignatureAlgorithmOID.RSA_WITH_SHA224: "sha224-rsa",
    SignatureAlgorithmOID.RSA_WITH_SHA256: "sha256-rsa",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "sha384-rsa",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "sha512-rsa",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "sha1-ecdsa",
    SignatureAlgorithmOID.ECDSA_WITH_SHA224: "sha224-ecdsa",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "sha256-ecdsa",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "sha384-ecdsa",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "sha512-ecdsa",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "sha1-dsa",
    SignatureAlgorithmOID.DSA_WITH_SHA224: "sha224-dsa",
    SignatureAlgorithmOID.DSA_WITH_SHA256: "sha256-dsa",
    SignatureAlgorithmOID.ED25519: "ed25519",
    SignatureAlgorithmOID.ED448: "ed448",
}
_WEAK_SIG_PREFIXES = ("md5-", "sha1-", "md2-")


def _signature_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    name = _SIG_NAMES.get(oid)
    if name is not None:
        return name
    if oid == SignatureAlgorithmOID.RSASSA_PSS:
        try:
            algo = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:
            algo = None
        return f"{algo.name}-rsapss" if algo is not None else "rsapss"
    if oid.dotted_string == "1.2.840.113549.1.1.2":
        return "md2-rsa"
    return f"oid-{oid.dotted_string}"


def _key_info(cert: x509.Certificate) -> tuple[str, int]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    return "unknown", 0


_DER_BY_ID: dict[int, tuple[x509.Certificate, bytes, TbsFields | None]] = {}
_TBS_BY_DER: dict[bytes, TbsFields | None] = {}


def _der_and_tbs(cert: x509.Certificate) -> tuple[bytes, TbsFields | None]:
    """DER and TBS pieces of ``cert``: by object identity first, then by the DER bytes.

    (A certificate object as a dictionary key costs ~3 us per lookup: it hashes and compares its
    DER each time. Identical DER in different objects is rare: parsers here reuse objects.)
    """
    hit = _DER_BY_ID.get(id(cert))
    if hit is not None and hit[0] is cert:
        return hit[1], hit[2]
    der = cert.public_bytes(serialization.Encoding.DER)
    try:
        tbs = _TBS_BY_DER[der]
    except KeyError:
        tbs = _remember(_TBS_BY_DER, der, tbs_of(der))
    _remember(_DER_BY_ID, id(cert), (cert, der, tbs))  # the entry holds cert: its id stays unique
    return der, tbs


def tbs_fields(cert: x509.Certificate) -> TbsFields | None:
    """The raw TBS pieces of ``cert`` (cached by certificate), None when the DER walk fails."""
    return _der_and_tbs(cert)[1]


def der_bytes(cert: x509.Certificate) -> bytes:
    """The DER encoding of ``cert`` (cached by certificate, like its facts)."""
    return _der_and_tbs(cert)[0]


_NAME_TEXT: dict[bytes, str] = {}
_KEY_INFO: dict[bytes, tuple[str, int]] = {}


def _name_text(raw: bytes | None, cert: x509.Certificate, subject: bool) -> str:
    """RFC 4514 text of a name, cached by its DER (an issuer is shared by many leaves)."""
    found = _NAME_TEXT.get(raw) if raw is not None else None
    if found is not None or raw is None:
        return found or (cert.subject if subject else cert.issuer).rfc4514_string()
    found = simple_name_text(raw)  # the plain case straight from the DER, without Name objects
    if found is None:
        found = (cert.subject if subject else cert.issuer).rfc4514_string()
    if not subject:  # issuers repeat (one per intermediate); a leaf's subject is seen once
        _remember(_NAME_TEXT, raw, found)
    return found


def _compute_facts(cert: x509.Certificate) -> CertFacts:
    der, tbs = _der_and_tbs(cert)
    if tbs is None:
        key_type, key_bits = _key_info(cert)
    else:
        found = _KEY_INFO.get(tbs.spki)  # a key shared by many certificates is decoded once
        key_type, key_bits = found if found is not None else _remember(_KEY_INFO, tbs.spki, _key_info(cert))
    sig = _signature_name(cert)
    try:
        extensions = cert.extensions
    except ValueError:  # malformed or duplicate extensions: report as absent, never crash
        extensions = x509.Extensions([])
    by_kind = {type(ext.value): ext.value for ext in extensions}  # one pass (duplicates do not parse)
    san = by_kind.get(x509.SubjectAlternativeName)  # exact classes: isinstance() on these ABCs is slow
    ski = by_kind.get(x509.SubjectKeyIdentifier)
    aki = by_kind.get(x509.AuthorityKeyIdentifier)
    bc = by_kind.get(x509.BasicConstraints)
    dns: list[str] = []
    ips: list[str] = []
    if isinstance(san, x509.SubjectAlternativeName):
        for general in san:
            if type(general) is x509.DNSName:
                dns.append(general.value)
            elif type(general) is x509.IPAddress:
                ips.append(str(general.value))
    weak = (
        (key_type in {"rsa", "dsa"} and key_bits < 2048)
        or (key_type == "ecdsa" and key_bits < 256)
        or sig.startswith(_WEAK_SIG_PREFIXES)
    )
    aki_id = aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None
    subject = _name_text(tbs.subject if tbs else None, cert, True)
    issuer = _name_text(tbs.issuer if tbs else None, cert, False)
    # equal names have equal RFC 4514 texts, so different texts settle the (costly) name comparison
    self_issued = subject == issuer and cert.subject == cert.issuer
    return CertFacts(
        subject=subject,
        issuer=issuer,
        serial=f"{cert.serial_number:x}",
        dns_names=tuple(dns),
        ip_addresses=tuple(ips),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_bits=key_bits,
        signature_algorithm=sig,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        ski=ski.digest.hex() if isinstance(ski, x509.SubjectKeyIdentifier) else None,
        aki=aki_id.hex() if aki_id is not None else None,
        is_ca=bool(isinstance(bc, x509.BasicConstraints) and bc.ca),
        self_issued=self_issued,
        weak_crypto=weak,
    )


_FACTS_BY_DER: dict[bytes, CertFacts] = {}
_FACTS_BY_ID: dict[int, tuple[x509.Certificate, CertFacts]] = {}


def facts(cert: x509.Certificate) -> CertFacts:
    """The :class:`CertFacts` of ``cert``, cached by its DER (equal certificates, equal facts).

    One chain asks for its facts a dozen times: the same object is found first by identity (the
    entry holds the certificate, so its id cannot be reused while cached), in ~0.5 us.
    """
    hit = _FACTS_BY_ID.get(id(cert))
    if hit is not None and hit[0] is cert:
        return hit[1]
    der = _der_and_tbs(cert)[0]
    found = _FACTS_BY_DER.get(der)
    if found is None:
        found = _remember(_FACTS_BY_DER, der, _compute_facts(cert))
    _remember(_FACTS_BY_ID, id(cert), (cert, found))
    return found


def chain_roles(chain: Sequence[x509.Certificate]) -> tuple[Role, ...]:
    """Roles of a presented chain: position 0 is the leaf, a self-issued CA at the end is the root."""
    roles: list[Role] = []
    for i, cert in enumerate(chain):
        if i == 0:
            roles.append(Role.LEAF)
            continue
        f = facts(cert)
        is_last = i == len(chain) - 1
        roles.append(Role.ROOT if is_last and f.self_issued and (f.is_ca or cert.version is x509.Version.v1)
                     else Role.INTERMEDIATE)
    return tuple(roles)


def to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """PEM text of certificates, in order (for writing bundles and test files)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def parse_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``name`` as an IP address (brackets and IPv6 zone ignored), or None when it is a host name."""
    text = name.strip().strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
