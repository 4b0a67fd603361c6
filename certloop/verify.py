"""Verification verdicts, offline and at an injected time.

    verdict = verify_chain(chain, trust=trust, at=now, hostname="shop.example", caches=caches)
    if verdict is Verdict.OK: ...                     # trust: certloop.truststore; caches: certloop.caches
    earliest_expiry(chain_facts, chain_roles(chain, caches))   # leaf + intermediates, presented root excluded

Path building and signature checks come from ``cryptography.x509.verification``. It raises one
generic ``VerificationError``, so when it fails the cause is classified here, deterministically, in
this order: leaf dates, self-signed leaf, dates of the presented issuers on the path, whether the
top of the path reaches the trust store; anything else that the library rejected (bad signature,
weak algorithm, path length, key usage) is ``invalid``. Hostname coverage is decided by
:func:`certloop.hostnames.covers` (RFC 6125) rather than by the library, so the verdict and the
``hostname_match`` fact agree.

Verdicts are remembered in the given ``caches`` (:class:`VerifyCaches`) by (chain fingerprints,
hostname, trust store, position of ``at`` among every validity boundary of the chain and of the
store): the verdict is a function of exactly those inputs, so a remembered verdict can never outlive
a ``not_before``/``not_after`` boundary, and what the caches hold never changes a verdict, only its cost.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from itertools import count
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    VerificationError,
)

from certloop.bounded import VERDICTS, remember
from certloop.der import oid_contents, raw_extensions
from certloop.facts import CertFacts, FactsCaches, Role, der_bytes, facts, tbs_fields
from certloop.hostnames import covers
from certloop.truststore import TrustStore, claims_issuer, signed_by

__all__ = ["UpperChain", "Verdict", "VerifyCaches", "earliest_expiry", "verify_chain"]

_SIGNATURE_BUDGET = 32  # signature checks when classifying one chain: a hostile chain stays cheap


class Verdict(StrEnum):
    """The outcome of verifying a presented chain. A fixed set: used as a metric label value."""

    OK = "ok"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNKNOWN_AUTHORITY = "unknown_authority"
    INCOMPLETE_CHAIN = "incomplete_chain"
    SELF_SIGNED = "self_signed"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    INTERMEDIATE_EXPIRED = "intermediate_expired"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class UpperChain:
    """What the upper-chain shortcut (below) knows about the presented certificates above a leaf."""

    eligible: bool  # no name or policy constraints above, nothing undecodable
    bounds: list[datetime]  # their validity boundaries, sorted
    issuer_subject: bytes  # chain[1]'s subject DER (b"" when it does not decode)
    issuer_key: object  # chain[1]'s public key, decoded once (None when it does not decode)


class VerifyCaches(FactsCaches, Protocol):
    """What :func:`verify_chain` remembers between calls (:class:`certloop.caches.Caches` is the one kept)."""

    verdicts: dict[tuple[object, ...], Verdict]  # by chain, name, store and validity bucket
    upper: dict[tuple[object, ...], Verdict]  # by leaf shape under one presented upper chain
    upper_info: dict[tuple[object, ...], UpperChain]  # by upper chain and store
    signature_params: dict[bytes, object]  # a signature algorithm's decoded parameters
    path_builds: count[int]  # advanced once per full path build (what the maps above did not save); one
    # next() on a count is atomic, so threads sharing the caches lose no build, with no lock


# ------------------------------------------------------------------------------------------ verify


def _server_eku(_policy: Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
    # An EE certificate restricted to other purposes (e.g. clientAuth only) is not a server certificate.
    if eku is not None and ExtendedKeyUsageOID.SERVER_AUTH not in eku and (
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku
    ):
        raise ValueError("extended key usage does not include serverAuth")


# Web PKI rules for CAs and leaves, except that the leaf's SAN is optional (hostname coverage is
# decided by covers()) and its EKU must allow serverAuth when present.
_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_eku)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()


def verify_chain(
    chain: Sequence[x509.Certificate], *, trust: TrustStore, at: datetime, hostname: str | None = None,
    caches: VerifyCaches,
) -> Verdict:
    """Verify a presented chain (leaf first) against ``trust`` at ``at`` (aware), optionally for a name."""
    if not chain:
        return Verdict.INVALID
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    at = at.astimezone(UTC).replace(microsecond=0)  # certificate times have whole seconds
    chain_facts = []
    for cert in chain:  # a loop: a comprehension naming caches costs a closure cell (certloop.caches)
        chain_facts.append(facts(cert, caches))
    chain_bounds = sorted(d for f in chain_facts for d in (f.not_before, f.not_after))
    key = (
        tuple(f.fingerprint_sha256 for f in chain_facts),
        hostname or None,  # as given: two spellings may differ in kind ("127.0.0.1." is a DNS name)
        trust.token,
        bisect.bisect_left(chain_bounds, at),
        bisect.bisect_right(chain_bounds, at),
        bisect.bisect_left(trust.boundaries, at),
        bisect.bisect_right(trust.boundaries, at),
    )
    verdicts = caches.verdicts
    found = verdicts.get(key)
    if found is None:
        found = remember(verdicts, key, _verify_uncached(chain, chain_facts[0], trust, at, hostname, caches), VERDICTS)
    return found


def _verify_uncached(
    chain: Sequence[x509.Certificate], lf: CertFacts, trust: TrustStore, at: datetime, hostname: str | None,
    caches: VerifyCaches,
) -> Verdict:
    verdict = _verify_shortcut(chain, trust, at, caches)
    if verdict is None:
        verdict = _verify_reference(chain, trust, at, caches)
    if verdict is Verdict.OK and hostname and not covers(lf, hostname):
        return Verdict.HOSTNAME_MISMATCH
    return verdict


def _verify_reference(
    chain: Sequence[x509.Certificate], trust: TrustStore, at: datetime, caches: VerifyCaches
) -> Verdict:
    """The full path: build and check with ``cryptography.x509.verification``, classify a failure."""
    next(caches.path_builds)
    verifier = (
        PolicyBuilder()
        .store(trust.store)
        .time(at)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()  # the server verifier insists on a SAN match; covers() decides names
    )
    try:
        verifier.verify(chain[0], list(chain[1:]))
    except VerificationError:
        return _classify(chain, trust, at, caches)
    return Verdict.OK


# --------------------------------------------------------------------------- the upper-chain shortcut
#
# Many leaves share one issuing chain. The reference result for a leaf that is inside its validity
# period and signed by the presented issuer depends on the leaf only through its "shape": everything
# the path builder and the policies look at except the signature bytes, dates, serial value, subject
# and SAN values (checked by covers()), key bits and SKI value. Each candidate issuer's signature
# check gives the same answer for two leaves signed by the same key. So the verdict of the first such
# leaf, computed by the reference, is the verdict of every later leaf of the same shape under the same
# presented upper chain, trust store and validity-boundary bucket: those cost one signature check.
# Anything outside that argument (no presented issuer, a self-issued or trusted leaf, name or policy
# constraints above, an undecodable field, a bad signature) takes the reference path.

_SHAPE_VALUES = frozenset(oid_contents(o) for o in (
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS, ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.KEY_USAGE,
    ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.NAME_CONSTRAINTS, ExtensionOID.EXTENDED_KEY_USAGE,
))  # the extensions the Web PKI policies read the value of; others matter by OID and criticality only
_UPPER_REFUSED = frozenset({
    ExtensionOID.NAME_CONSTRAINTS, ExtensionOID.POLICY_CONSTRAINTS, ExtensionOID.INHIBIT_ANY_POLICY,
    ExtensionOID.POLICY_MAPPINGS,
})  # they make the result depend on the leaf's names or policies: the shortcut stays away


def _verify_shortcut(
    chain: Sequence[x509.Certificate], trust: TrustStore, at: datetime, caches: VerifyCaches
) -> Verdict | None:
    """The verdict without path building when provably equal to the reference's, else None."""
    leaf = chain[0]
    lf = facts(leaf, caches)
    if at < lf.not_before:  # the reference rejects any leaf outside its dates and classifies by them first
        return Verdict.NOT_YET_VALID
    if at > lf.not_after:
        return Verdict.EXPIRED
    if lf.self_issued or len(chain) < 2 or lf.fingerprint_sha256 in trust:
        return None
    above = []
    for cert in chain[1:]:  # a loop: see verify_chain
        above.append(facts(cert, caches).fingerprint_sha256)
    upper = tuple(above)
    info = _upper_info(chain, upper, trust, caches)
    shape = _leaf_shape(leaf, lf, caches) if info.eligible else None
    if shape is None:
        return None
    bounds = info.bounds
    key = (shape, upper, trust.token, bisect.bisect_left(bounds, at), bisect.bisect_right(bounds, at),
           bisect.bisect_left(trust.boundaries, at), bisect.bisect_right(trust.boundaries, at))
    signed = _signature_ok(leaf, info.issuer_subject, info.issuer_key, caches)
    if signed is None:
        signed = signed_by(leaf, chain[1])
    if not signed:
        return None  # the reference classifies a broken signature
    known = caches.upper.get(key)
    if known is not None:
        return known
    verdict = _verify_reference(chain, trust, at, caches)
    if lf.not_before < at < lf.not_after:  # strictly inside: the dates played no part in it
        remember(caches.upper, key, verdict, VERDICTS)
    return verdict


def _upper_info(
    chain: Sequence[x509.Certificate], upper: tuple[str, ...], trust: TrustStore, caches: VerifyCaches
) -> UpperChain:
    key = (upper, trust.token)
    found = caches.upper_info.get(key)
    if found is None:
        anchors = [a for c in chain for a in trust.by_subject(c.issuer)]
        eligible = all(_unconstrained(c) for c in (*chain[1:], *anchors))
        bounds: list[datetime] = []
        for cert in chain[1:]:  # a loop: see verify_chain
            f = facts(cert, caches)
            bounds += (f.not_before, f.not_after)
        bounds.sort()
        tbs = tbs_fields(chain[1], caches)
        try:
            issuer_key: object = chain[1].public_key()
        except (ValueError, UnsupportedAlgorithm):
            issuer_key = None
        found = remember(caches.upper_info, key, UpperChain(eligible, bounds, tbs.subject if tbs else b"", issuer_key),
                         VERDICTS)
    return found


def _unconstrained(cert: x509.Certificate) -> bool:
    try:
        return not any(e.oid in _UPPER_REFUSED for e in cert.extensions)
    except ValueError:
        return False


def _leaf_shape(leaf: x509.Certificate, lf: CertFacts, caches: FactsCaches) -> tuple[object, ...] | None:
    """What the reference's leaf checks depend on besides signature, dates, names and key bits."""
    tbs = tbs_fields(leaf, caches)
    if tbs is None or not tbs.serial or tbs.trailer:
        return None
    try:
        leaf.extensions  # noqa: B018 -- parsed (and cached) by facts(); one that does not parse is refused
    except ValueError:
        return None
    raw = raw_extensions(tbs)
    if raw is None:
        return None
    exts = tuple((oid, critical, value if oid in _SHAPE_VALUES else b"") for oid, critical, value in raw)
    serial = tbs.serial
    # the serial's value is per leaf; rules look at its length, sign, zero and minimal encoding
    padded = len(serial) > 1 and serial[0] == 0 and serial[1] < 0x80
    return (
        tbs.version, (len(serial), serial[0] >> 7, serial[0] == 0, padded),
        tbs.signature, tbs.outer_signature == tbs.signature, tbs.issuer, tbs.subject == b"0\x00",
        tbs.validity_tags, lf.not_before.year >= 2050, lf.not_after.year >= 2050,
        tbs.spki_algorithm, len(tbs.spki), tbs.key_head, tbs.spki[-5:] if lf.key_type == "rsa" else b"",
        lf.key_type, lf.key_bits, exts,
    )


def _signature_ok(
    leaf: x509.Certificate, issuer_subject: bytes, issuer_key: object, caches: VerifyCaches
) -> bool | None:
    """Did the issuer's key make the leaf's signature (names equal byte for byte)? None: cannot tell here."""
    tbs = tbs_fields(leaf, caches)
    verify = getattr(issuer_key, "verify", None)
    if tbs is None or tbs.issuer != issuer_subject or verify is None:
        return None
    params = caches.signature_params.get(tbs.signature)
    if params is None:  # a handful of algorithms (None itself, for Ed25519, is looked up each time: cheap)
        params = remember(caches.signature_params, tbs.signature, leaf.signature_algorithm_parameters, 64)
    signed = der_bytes(leaf, caches)[tbs.span[0] : tbs.span[1]]  # = leaf.tbs_certificate_bytes, without a re-encoding
    try:
        if params is None:  # Ed25519, Ed448
            verify(leaf.signature, signed)
        elif isinstance(params, ec.ECDSA):
            verify(leaf.signature, signed, params)
        else:  # an RSA padding (PKCS#1 v1.5 or PSS with the certificate's parameters)
            verify(leaf.signature, signed, params, leaf.signature_hash_algorithm)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return True


def _classify(chain: Sequence[x509.Certificate], trust: TrustStore, at: datetime, caches: FactsCaches) -> Verdict:
    leaf = chain[0]
    lf = facts(leaf, caches)
    if at < lf.not_before:
        return Verdict.NOT_YET_VALID
    if at > lf.not_after:
        return Verdict.EXPIRED
    if lf.fingerprint_sha256 in trust:
        # Pinned: the served certificate itself is a configured anchor (``ca_file`` holding that
        # very certificate, the usual way to watch an internal service). OpenSSL, Python's ssl and
        # Go trust it as it is; the Web PKI policy refuses such leaves (CA:TRUE, no SAN, v1), but
        # an anchor is trusted by configuration, not by its extensions. Dates still apply (above).
        return Verdict.OK
    if lf.self_issued and signed_by(leaf, leaf):
        return Verdict.SELF_SIGNED
    path = _presented_path(chain, caches)
    if path is None:
        return Verdict.INVALID  # a presented issuer matches by name and key id, but not by signature
    for cert in path[1:]:
        f = facts(cert, caches)
        if f.fingerprint_sha256 in trust:
            break  # from here the store's copy is the anchor
        if at > f.not_after:
            return Verdict.INTERMEDIATE_EXPIRED
        if at < f.not_before:
            return Verdict.INVALID
    top = path[-1]
    if facts(top, caches).fingerprint_sha256 in trust or trust.issuers_of(top, caches):
        return Verdict.INVALID  # reaches an anchor, yet rejected: signature, algorithm, constraints
    if facts(top, caches).self_issued:
        return Verdict.UNKNOWN_AUTHORITY  # a presented root the store does not trust
    if len(path) == 1:
        return Verdict.INCOMPLETE_CHAIN  # the leaf alone, its issuer neither sent nor trusted
    return Verdict.UNKNOWN_AUTHORITY  # intermediates sent, their root is not trusted


def _presented_path(chain: Sequence[x509.Certificate], caches: FactsCaches) -> list[x509.Certificate] | None:
    """Follow issuer links from the leaf through the presented certificates (any order).

    None when a presented certificate claims to be the issuer (name and key identifier) but its key
    did not make the signature: a broken chain rather than a missing one.
    """
    path = [chain[0]]
    remaining = list(chain[1:])
    budget = _SIGNATURE_BUDGET
    while remaining and not facts(path[-1], caches).self_issued:
        current = path[-1]
        claimed = [c for c in remaining if claims_issuer(current, c, caches)][:budget]
        budget -= len(claimed)
        issuer = next((c for c in claimed if signed_by(current, c)), None)
        if issuer is None:
            return None if claimed else path
        path.append(issuer)
        remaining.remove(issuer)
    return path


def earliest_expiry(chain: Sequence[CertFacts], roles: Sequence[Role]) -> datetime | None:
    """Earliest ``not_after`` over the leaf and the intermediates (a presented root is not relied on),
    from the facts of a chain and its roles (:func:`certloop.facts.chain_roles`)."""
    if not chain:
        return None
    return min(f.not_after for f, r in zip(chain, roles, strict=True) if r is not Role.ROOT)
