"""X.509 certificates in files and blobs: parse PEM, DER and PKCS#12, read certificate files safely.

Pure apart from :func:`read_certificate_file` and :func:`read_bounded`, which touch the file system
(one open, ``fstat`` and a bounded read). Parsing never lets one bad entry hide the others: every parser returns
the certificates it could read plus a :class:`Problem` per entry it could not.

    parsed = read_certificate_file("/etc/ssl/shop.pem", caches)   # FileError when nothing usable
    parsed.certificates, parsed.keys, parsed.problems         # in order; a key count; per-entry problems
    chain = load_der_chain(presented.chain_der, caches)       # a chain as sent in a TLS handshake
    to_pem(chain)                                             # and back to PEM text

What each certificate says (subject, dates, key, role in the chain) is :mod:`certloop.facts`.

Performance: :func:`load_der_chain` and the PEM parser remember what they parsed in the ``caches`` they
are given (:class:`ParseCaches`, bounded maps keyed by the DER bytes / the PEM block; the daemon's
:class:`certloop.caches.Caches`), so re-probing an unchanged endpoint parses nothing twice: the same PEM
block in many files (an intermediate in every fullchain) and identical binary contents
(:func:`certificates_in`) parse once.
"""

from __future__ import annotations

import binascii
import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certloop.bounded import remember
from certloop.errors import FileError, FileReason
from certloop.facts import FactsCaches, note_der

__all__ = [
    "MAX_FILE_BYTES",
    "ParseCaches",
    "Parsed",
    "Problem",
    "certificates_in",
    "load_der_chain",
    "parse_certificates",
    "parse_der",
    "parse_pem",
    "parse_pkcs12",
    "read_bounded",
    "read_certificate_file",
    "reason_for_errno",
    "to_pem",
]

MAX_FILE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Problem:
    """One entry that could not be read. ``index`` counts entries of its kind from 0 (PEM blocks, bags)."""

    index: int
    kind: str  # "certificate", "private_key", "pkcs12", "der"
    reason: FileReason
    detail: str = ""


class Parsed(NamedTuple):
    """What a blob or file contained: certificates in order, how many private keys, and problems."""

    certificates: tuple[x509.Certificate, ...]
    keys: int = 0
    problems: tuple[Problem, ...] = ()


class ParseCaches(FactsCaches, Protocol):
    """What the parsers remember between calls (:class:`certloop.caches.Caches` is the one kept).

    A parser that decodes a PEM block itself notes the DER for :mod:`certloop.facts`, hence the base.
    """

    der: dict[bytes, x509.Certificate]  # a DER certificate (a presented chain, a .der file)
    pem: dict[bytes, x509.Certificate]  # a PEM block (an intermediate in every fullchain)
    content: dict[tuple[bytes, bytes | None], Parsed]  # a binary file by (SHA-256, password)


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


def parse_pem(data: bytes, caches: ParseCaches) -> Parsed:
    """Every ``CERTIFICATE`` block of a PEM text, in order; keys are counted, other blocks ignored.

    Text between blocks (comments, garbage, ``openssl x509 -text`` output) is skipped. A block
    that does not decode, or lacks its END line, becomes a :class:`Problem` and the following
    blocks are still read.
    """
    certs: list[x509.Certificate] = []
    problems: list[Problem] = []
    keys = 0
    index = 0
    seen = caches.pem
    for label, block in _pem_blocks(data):
        if label in _CERT_LABELS:
            if block is None:
                problems.append(Problem(index, "certificate", FileReason.PARSE_ERROR, "no END line"))
            else:
                try:
                    cert = seen.get(block)
                    certs.append(cert if cert is not None else _pem_parsed(block, label, caches))
                except ValueError as exc:
                    problems.append(Problem(index, "certificate", FileReason.PARSE_ERROR, _short(exc)))
            index += 1
        elif label.endswith(b"PRIVATE KEY"):
            keys += 1
    return Parsed(tuple(certs), keys, tuple(problems))


def parse_der(data: bytes, caches: ParseCaches) -> Parsed:
    """A single DER-encoded certificate."""
    try:
        return Parsed((_der_cached(bytes(data), caches.der),))
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


def parse_certificates(data: bytes, caches: ParseCaches, *, password: bytes | None = None) -> Parsed:
    """Detect the format (PEM, DER certificate, PKCS#12) and parse.

    PEM is recognised by its armour; a binary blob is tried as a DER certificate, then as PKCS#12
    (with ``password``, ``None`` meaning no password). Problems explain an empty result.
    """
    if not data.strip():
        return Parsed((), 0, (Problem(0, "file", FileReason.EMPTY),))
    if b"-----BEGIN " in data:
        return parse_pem(data, caches)
    der = parse_der(data, caches)
    if der.certificates:
        return der
    p12 = parse_pkcs12(data, password)
    if p12.certificates or (p12.problems and p12.problems[0].reason is FileReason.WRONG_PASSWORD):
        return p12
    if p12.keys:  # an archive with only a key
        return p12
    return Parsed((), 0, (Problem(0, "file", FileReason.NO_CERTIFICATE, "neither PEM, DER nor PKCS#12"),))


def read_certificate_file(
    path: str | os.PathLike[str], caches: ParseCaches, *, password: bytes | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> Parsed:
    """Read and parse a certificate file, reading at most ``max_bytes`` (+1 to detect larger files).

    Raises :class:`FileError` when the file yields no certificate; otherwise returns the
    certificates and any per-entry problems. FIFOs and devices are refused without blocking.
    """
    name = os.fspath(path)
    data, _ = read_bounded(name, max_bytes)
    return certificates_in(name, data, caches, password=password)


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


def certificates_in(name: str, data: bytes, caches: ParseCaches, *, password: bytes | None = None) -> Parsed:
    """:func:`parse_certificates` for a file's bytes; FileError (naming ``name``) when none is usable.

    Identical binary contents (DER, PKCS#12: a keystore copied to several places, whose password
    derivation alone costs milliseconds) parse once, by their SHA-256. PEM text is not hashed whole:
    its blocks are remembered one by one (:func:`parse_pem`), so identical text costs one scan and a
    lookup per block, while hashing every file read would cost more than that scan (about a fifth
    of parsing a leaf-plus-CA file, counted with callgrind).
    """
    if b"-----BEGIN " in data:
        parsed = parse_pem(data, caches)
        key = None
    else:
        key = (hashlib.sha256(data).digest(), password)
        cached = caches.content.get(key)
        if cached is not None:
            return cached
        parsed = parse_certificates(data, caches, password=password)
    if not parsed.certificates:
        if parsed.problems:
            first = parsed.problems[0]
            raise FileError(name, first.reason, first.detail)
        raise FileError(name, FileReason.NO_CERTIFICATE)
    return parsed if key is None else remember(caches.content, key, parsed)


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


def _der_cached(der: bytes, seen: dict[bytes, x509.Certificate]) -> x509.Certificate:
    cert = seen.get(der)
    if cert is None:
        cert = remember(seen, der, x509.load_der_x509_certificate(der))
    return cert


def _pem_parsed(block: bytes, label: bytes, caches: ParseCaches) -> x509.Certificate:
    """A PEM block's certificate, parsed and remembered: the same block in many files (a shared
    intermediate) parses once."""
    cert = _pem_plain(block, label, caches)
    if cert is None:
        pem = block if label == b"CERTIFICATE" else block.replace(label, b"CERTIFICATE")
        cert = x509.load_pem_x509_certificate(pem)
    return remember(caches.pem, block, cert)


_LINE_BREAKS = bytes.maketrans(b"", b"")


def _pem_plain(block: bytes, label: bytes, caches: FactsCaches) -> x509.Certificate | None:
    """The certificate of a plain PEM block (no headers, only base64 lines), decoded here; else None.

    Decoding the base64 here and parsing DER costs half of ``load_pem_x509_certificate`` and gives
    the DER itself, which :mod:`certloop.facts` then need not ask the certificate for. Anything
    unusual (a header line, stray characters, bad padding, DER that does not parse) is None: the
    caller hands the block to ``cryptography``'s PEM loader, which decides and words the error.
    """
    start = len(label) + 16  # just after "-----BEGIN <label>-----": the line must end there
    if block[start : start + 1] == b"\r":
        start += 1
    end = block.rfind(b"-----END ")
    if block[start : start + 1] != b"\n" or end <= start:
        return None
    try:
        der = binascii.a2b_base64(block[start:end].translate(_LINE_BREAKS, b"\r\n"), strict_mode=True)
        cert = x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        return None
    note_der(cert, der, caches)
    return cert


def load_der_chain(chain_der: Iterable[bytes], caches: ParseCaches) -> tuple[x509.Certificate, ...]:
    """Parse a presented chain (DER, leaf first), reusing certificates seen before.

    Raises ``ValueError`` for an undecodable certificate (the TLS layer decides what that means).
    """
    seen = caches.der
    chain = []
    for der in chain_der:  # a loop: a comprehension naming seen costs a closure cell (certloop.caches)
        der = bytes(der)
        cert = seen.get(der)
        if cert is None:
            cert = remember(seen, der, x509.load_der_x509_certificate(der))
        chain.append(cert)
    return tuple(chain)


def to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """PEM text of certificates, in order (for writing bundles and test files)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
