"""Trust anchors: the CA certificates a chain is verified against, and the issuer links between certificates.

    trust = TrustStore.system(caches)                 # OpenSSL's default bundle, else Debian's; once per caches
    trust = TrustStore.from_file("ca.pem", caches)    # TrustStoreError when unreadable or without a CA
    facts(leaf, caches).fingerprint_sha256 in trust   # is this very certificate an anchor?
    trust.issuers_of(cert, caches)                    # anchors that issued it: name, key id and signature

A store is read-only once built (thread-safe) and carries what :mod:`certloop.verify` keys its verdict
caches by: a ``token`` naming the store and the sorted validity ``boundaries`` of its anchors. The issuer
links (:func:`claims_issuer`, :func:`signed_by`, :func:`issued_by`) are the ones the store's lookup and the
classification of a rejected chain in :mod:`certloop.verify` share.
"""

from __future__ import annotations

import itertools
import os
import ssl
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509.verification import Store

from certloop.errors import TrustStoreError
from certloop.facts import FactsCaches, facts
from certloop.x509 import ParseCaches, parse_pem

__all__ = ["TrustCaches", "TrustStore", "claims_issuer", "issued_by", "signed_by"]

DEBIAN_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


_tokens = itertools.count(1)


class TrustCaches(ParseCaches, Protocol):
    """What loading stores remembers: parsed PEM blocks, and the system bundle once it was read."""

    system_trust: TrustStore | None


class TrustStore:
    """Trust anchors, loaded once and reused by every verification (thread-safe: read-only)."""

    def __init__(self, certificates: Sequence[x509.Certificate], *, source: str = "<memory>") -> None:
        if not certificates:
            raise TrustStoreError(source, "no CA certificate found")
        self.source = source
        self.certificates = tuple(certificates)
        self.token = next(_tokens)
        self._store = Store(list(self.certificates))
        with warnings.catch_warnings():
            # Real bundles hold a few old roots cryptography warns about (e.g. negative serials).
            warnings.simplefilter("ignore")
            # the SHA-256 of the DER, as CertFacts.fingerprint_sha256 writes it
            self._fingerprints = frozenset(c.fingerprint(hashes.SHA256()).hex() for c in self.certificates)
            self.boundaries: list[datetime] = sorted(
                {d for c in self.certificates for d in (c.not_valid_before_utc, c.not_valid_after_utc)}
            )
        self._by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        for cert in self.certificates:
            self._by_subject.setdefault(cert.subject, []).append(cert)

    @classmethod
    def from_pem(cls, data: bytes, caches: ParseCaches, *, source: str = "<memory>") -> TrustStore:
        with warnings.catch_warnings():
            # Real bundles hold a few old roots cryptography warns about (e.g. negative serials).
            warnings.simplefilter("ignore")
            certificates = parse_pem(data, caches).certificates
        return cls(certificates, source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], caches: ParseCaches) -> TrustStore:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise TrustStoreError(os.fspath(path), exc.strerror or str(exc)) from exc
        return cls.from_pem(data, caches, source=os.fspath(path))

    @classmethod
    def system(cls, caches: TrustCaches) -> TrustStore:
        """The operating system's bundle (OpenSSL's default CA file, else Debian's), read once per ``caches``.

        One store for the life of the caches (a daemon's): its token, and so every verdict remembered
        against it, survives config reloads.
        """
        if caches.system_trust is None:
            paths = ssl.get_default_verify_paths()
            candidates = [p for p in (paths.cafile, paths.openssl_cafile, DEBIAN_BUNDLE) if p]
            found = next((p for p in candidates if os.path.isfile(p)), None)
            if found is None:
                raise TrustStoreError(", ".join(candidates), "no system CA bundle found")
            caches.system_trust = cls.from_file(found, caches)
        return caches.system_trust

    def __contains__(self, fingerprint: str) -> bool:
        """Is the certificate with this SHA-256 fingerprint (hex, ``CertFacts.fingerprint_sha256``) an anchor?"""
        return fingerprint in self._fingerprints

    def __len__(self) -> int:
        return len(self.certificates)

    def by_subject(self, name: x509.Name) -> list[x509.Certificate]:
        """Anchors whose subject is ``name``."""
        return self._by_subject.get(name, [])

    def issuers_of(self, cert: x509.Certificate, caches: FactsCaches) -> list[x509.Certificate]:
        """Anchors that issued ``cert`` (name, key identifier and signature all match)."""
        return [c for c in self._by_subject.get(cert.issuer, []) if issued_by(cert, c, caches)]

    @property
    def store(self) -> Store:
        return self._store


# ------------------------------------------------------------------------------------- issuer links


def issued_by(cert: x509.Certificate, issuer: x509.Certificate, caches: FactsCaches) -> bool:
    """``issuer`` claims ``cert`` (:func:`claims_issuer`) and its key made the signature (:func:`signed_by`)."""
    return claims_issuer(cert, issuer, caches) and signed_by(cert, issuer)


def claims_issuer(cert: x509.Certificate, issuer: x509.Certificate, caches: FactsCaches) -> bool:
    """Issuer name equals the candidate's subject and key identifiers (when both present) agree."""
    if cert.issuer != issuer.subject:
        return False
    cf, inf = facts(cert, caches), facts(issuer, caches)
    return cf.aki is None or inf.ski is None or cf.aki == inf.ski


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer``'s key made ``cert``'s signature (``cryptography`` checks the names too); False on any failure."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True
