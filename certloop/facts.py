"""Certificate facts: what certloop reports about one certificate, and its role in a presented chain.

    caches = Caches()                                         # certloop.caches: one per daemon or run
    f = facts(cert, caches)                                   # remembered by certificate (DER equality)
    print(f.subject, f.not_after, f.weak_crypto)
    roles = chain_roles(chain, caches)                        # (Role.LEAF, Role.INTERMEDIATE, ...)

Pure, apart from what it remembers in the ``caches`` it is given (:class:`FactsCaches`: the maps
below, bounded). Certificates come from :mod:`certloop.x509` (files, blobs, presented chains).

Performance: :func:`facts` remembers its answers keyed by the certificate / its DER bytes, so re-probing
an unchanged endpoint describes nothing twice (what a hit saves: benchmarks/RESULTS.md, "Certificate
facts caches"). It decodes the extensions in one pass and remembers names and keys by their DER (an
issuer's name, a shared key: decoded once). :func:`der_bytes` and :func:`tbs_fields` share its DER map.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple, Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from certloop.bounded import remember
from certloop.der import TbsFields, simple_name_text, tbs_of

__all__ = ["CertFacts", "FactsCaches", "Role", "chain_roles", "der_bytes", "facts", "note_der", "tbs_fields"]


class Role(StrEnum):
    """A certificate's place in a presented chain."""

    LEAF = "leaf"
    INTERMEDIATE = "intermediate"
    ROOT = "root"


class CertFacts(NamedTuple):
    """What certloop reports about one certificate. Datetimes are aware UTC.

    A named tuple, not a frozen dataclass: one is built per certificate read (why, and what must stay
    true: docs/architecture.md, "Value types").
    """

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


class FactsCaches(Protocol):
    """What :func:`facts` and the DER helpers remember between calls, each map bounded.

    :class:`certloop.caches.Caches` is the one a daemon (or ``certloop check``) makes and passes down;
    a test makes a fresh one. Entries keyed by ``id(cert)`` hold the certificate itself, so that id
    cannot be reused by another object while the entry lives.
    """

    facts_by_id: dict[int, tuple[x509.Certificate, CertFacts]]  # the same object again (one chain, a dozen asks)
    facts_by_der: dict[bytes, CertFacts]  # an equal certificate in another object
    der_by_id: dict[int, tuple[x509.Certificate, bytes, TbsFields | None]]  # its DER and TBS pieces
    tbs_by_der: dict[bytes, TbsFields | None]
    name_text: dict[bytes, str]  # an issuer's RFC 4514 text by its DER (shared by many leaves)
    key_info: dict[bytes, tuple[str, int]]  # key type and bits by the SubjectPublicKeyInfo DER


def _der_and_tbs(cert: x509.Certificate, caches: FactsCaches) -> tuple[bytes, TbsFields | None]:
    """DER and TBS pieces of ``cert``: by object identity first, then by the DER bytes.

    (A certificate object as a dictionary key is slow: it hashes and compares its DER on every lookup;
    benchmarks/RESULTS.md, "Certificate facts caches". Identical DER in different objects is rare:
    parsers here reuse objects.)
    """
    by_id = caches.der_by_id
    hit = by_id.get(id(cert))
    if hit is not None and hit[0] is cert:
        return hit[1], hit[2]
    der = cert.public_bytes(serialization.Encoding.DER)
    by_der = caches.tbs_by_der
    try:
        tbs = by_der[der]
    except KeyError:
        tbs = remember(by_der, der, tbs_of(der))
    remember(by_id, id(cert), (cert, der, tbs))  # the entry holds cert: its id stays unique
    return der, tbs


def note_der(cert: x509.Certificate, der: bytes, caches: FactsCaches) -> None:
    """Record that ``der`` is the encoding ``cert`` was parsed from (a parser that has it already)."""
    by_der = caches.tbs_by_der
    remember(caches.der_by_id, id(cert), (cert, der, by_der.get(der) or remember(by_der, der, tbs_of(der))))


def tbs_fields(cert: x509.Certificate, caches: FactsCaches) -> TbsFields | None:
    """The raw TBS pieces of ``cert`` (remembered by certificate), None when the DER walk fails."""
    return _der_and_tbs(cert, caches)[1]


def der_bytes(cert: x509.Certificate, caches: FactsCaches) -> bytes:
    """The DER encoding of ``cert`` (remembered by certificate, like its facts)."""
    return _der_and_tbs(cert, caches)[0]


def _name_text(raw: bytes | None, cert: x509.Certificate, subject: bool, names: dict[bytes, str]) -> str:
    """RFC 4514 text of a name, remembered in ``names`` by its DER (an issuer is shared by many leaves)."""
    found = names.get(raw) if raw is not None else None
    if found is not None or raw is None:
        return found or (cert.subject if subject else cert.issuer).rfc4514_string()
    found = simple_name_text(raw)  # the plain case straight from the DER, without Name objects
    if found is None:
        found = (cert.subject if subject else cert.issuer).rfc4514_string()
    if not subject:  # issuers repeat (one per intermediate); a leaf's subject is seen once
        remember(names, raw, found)
    return found


def _compute_facts(cert: x509.Certificate, caches: FactsCaches) -> CertFacts:
    der, tbs = _der_and_tbs(cert, caches)
    if tbs is None:
        key_type, key_bits = _key_info(cert)
    else:
        keys = caches.key_info
        found = keys.get(tbs.spki)  # a key shared by many certificates is decoded once
        key_type, key_bits = found if found is not None else remember(keys, tbs.spki, _key_info(cert))
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
    names = caches.name_text
    subject = _name_text(tbs.subject if tbs else None, cert, True, names)
    issuer = _name_text(tbs.issuer if tbs else None, cert, False, names)
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


def facts(cert: x509.Certificate, caches: FactsCaches) -> CertFacts:
    """The :class:`CertFacts` of ``cert``, remembered in ``caches`` by its DER (equal certificates, equal facts).

    One chain asks for its facts a dozen times: the same object is found first by identity (the
    entry holds the certificate, so its id cannot be reused while remembered), the cheapest lookup.
    """
    by_id = caches.facts_by_id
    hit = by_id.get(id(cert))
    if hit is not None and hit[0] is cert:
        return hit[1]
    der = _der_and_tbs(cert, caches)[0]
    by_der = caches.facts_by_der
    found = by_der.get(der)
    if found is None:
        found = remember(by_der, der, _compute_facts(cert, caches))
    remember(by_id, id(cert), (cert, found))
    return found


def chain_roles(chain: Sequence[x509.Certificate], caches: FactsCaches) -> tuple[Role, ...]:
    """Roles of a presented chain: position 0 is the leaf, a self-issued CA at the end is the root."""
    roles: list[Role] = []
    for i, cert in enumerate(chain):
        if i == 0:
            roles.append(Role.LEAF)
            continue
        f = facts(cert, caches)
        is_last = i == len(chain) - 1
        roles.append(Role.ROOT if is_last and f.self_issued and (f.is_ca or cert.version is x509.Version.v1)
                     else Role.INTERMEDIATE)
    return tuple(roles)
