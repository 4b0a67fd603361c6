"""The fast paths of certloop.x509, certloop.facts and certloop.verify give exactly the reference results.

``verify_chain`` reuses the verdict of an earlier leaf with the same shape under the same presented
upper chain (one signature check instead of path building); ``facts`` slices the DER and remembers
names and keys. These tests compare both with what a fresh :class:`Caches` gives (the full path
builder, nothing remembered) and with plain ``cryptography`` computations, on many chains, and see
the caches at work through their public counters: ``paths_built`` and the size of each map.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from certloop.caches import Caches
from certloop.der import oid_contents, raw_extensions, simple_name_text, tbs_of
from certloop.facts import CertFacts, der_bytes, facts, tbs_fields
from certloop.truststore import TrustStore
from certloop.verify import Verdict, verify_chain
from certloop.x509 import parse_pem, to_pem
from tests.support.pki import Issued, Pki, build_cert, new_key, openssl_sha1_leaf

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
Chain = list[x509.Certificate]


def _reference(chain: Chain, trust: TrustStore, at: datetime, hostname: str | None) -> Verdict:
    """The full path: with nothing remembered, cryptography's path builder decides (classified on failure)."""
    fresh = Caches()
    verdict = verify_chain(chain, trust=trust, at=at, hostname=hostname, caches=fresh)
    # the path builder ran, except for a leaf outside its dates: those are judged by the dates alone
    assert fresh.paths_built == (0 if verdict in {Verdict.EXPIRED, Verdict.NOT_YET_VALID} else 1)
    return verdict


def _custom_leaf(
    issuer: Issued, names: list[str], *, eku: list[x509.ObjectIdentifier] | None = None,
    extra: list[tuple[x509.ExtensionType, bool]] = (),  # type: ignore[assignment]
    sign_key: Any = None, ca: bool = False, key: Any = None, days: int = 90, pss: bool = False,
) -> x509.Certificate:
    key = key or new_key("ec256")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    for ext, critical in extra:
        builder = builder.add_extension(ext, critical=critical)
    if pss:
        padding = rsa_padding.PSS(mgf=rsa_padding.MGF1(hashes.SHA256()), salt_length=32)
        return builder.sign(sign_key or issuer.key, hashes.SHA256(), rsa_padding=padding)
    return builder.sign(sign_key or issuer.key, hashes.SHA256())


def _cases() -> Iterator[tuple[str, TrustStore, Chain]]:
    """Named chains with their trust store; leaves of one shape come in runs so the shortcut is used."""
    for kind in ("ec256", "rsa2048"):
        pki = Pki(now=NOW, key_kind=kind, intermediate_days=120)
        trust = TrustStore([pki.root])
        inter = pki.intermediate
        for i in range(4):
            leaf = pki.leaf([f"site{i}.example", f"*.w{i}.example"], key_kind=kind, days=200)
            yield f"{kind} valid {i}", trust, [leaf.cert, inter.cert]
            yield f"{kind} valid+root {i}", trust, [leaf.cert, inter.cert, pki.root]
        same_kind = pki.issue_intermediate(key_kind=kind, name=f"{kind} issuing CA", days=120)
        for i in range(3):  # leaves signed with the intermediate's own key type (RSA PKCS#1 or ECDSA)
            leaf = pki.leaf([f"k{i}.example"], key_kind=kind, issuer=same_kind, days=200)
            yield f"{kind} signed by {kind} {i}", trust, [leaf.cert, same_kind.cert]
        if kind == "rsa2048":  # RSA-PSS signatures, twice (the second one answered by the shortcut)
            for i in range(2):
                yield f"pss {i}", trust, [_custom_leaf(same_kind, [f"pss{i}.example"], pss=True,
                                                       eku=[ExtendedKeyUsageOID.SERVER_AUTH]), same_kind.cert]
        yield f"{kind} rsa leaf", trust, [pki.leaf(["rsa.example"], key_kind="rsa2048").cert, inter.cert]
        yield f"{kind} expired leaf", trust, [pki.leaf(["old.example"], not_before=NOW - timedelta(days=40),
                                                       not_after=NOW - timedelta(days=1)).cert, inter.cert]
        yield f"{kind} future leaf", trust, [pki.leaf(["new.example"], not_before=NOW + timedelta(days=1),
                                                      not_after=NOW + timedelta(days=40)).cert, inter.cert]
        other = Pki(now=NOW, key_kind=kind, name="stranger")
        for i in range(2):
            stranger = other.leaf([f"stranger{i}.example"])
            yield f"{kind} unknown authority {i}", trust, [stranger.cert, other.intermediate.cert]
            yield f"{kind} unknown root sent {i}", trust, [stranger.cert, other.intermediate.cert, other.root]
            yield f"{kind} incomplete {i}", trust, [pki.leaf([f"alone{i}.example"]).cert]
        yield f"{kind} self-signed", trust, [pki.self_signed(["me.example"]).cert]
        impostor = new_key(kind)  # same issuer name and key id, wrong key: the signature fails
        yield f"{kind} wrong signature", trust, [_custom_leaf(inter, ["forged.example"], sign_key=impostor,
                                                              eku=[ExtendedKeyUsageOID.SERVER_AUTH]), inter.cert]
        for i in range(2):
            yield f"{kind} no eku {i}", trust, [_custom_leaf(inter, [f"noeku{i}.example"]), inter.cert]
            yield f"{kind} client only {i}", trust, [
                _custom_leaf(inter, [f"client{i}.example"], eku=[ExtendedKeyUsageOID.CLIENT_AUTH]), inter.cert]
        yield f"{kind} ca leaf", trust, [_custom_leaf(inter, ["ca.example"], ca=True), inter.cert]
        yield f"{kind} critical unknown", trust, [_custom_leaf(inter, ["odd.example"], extra=[(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"), True)]),
            inter.cert]
        yield f"{kind} weak leaf key", trust, [pki.leaf(["weak.example"], key_kind="rsa1024").cert, inter.cert]
        # a second intermediate under the first: the first's path length 0 forbids it
        deep = build_cert(subject="deep CA", key=new_key(kind), issuer_cert=inter.cert, issuer_key=inter.key,
                          not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=50), ca=True)
        deep_issued = Issued(deep, new_key(kind), [])
        for i in range(2):
            deep_leaf = _custom_leaf(Issued(deep, deep_issued.key, []), [f"deep{i}.example"], sign_key=None)
            yield f"{kind} path length {i}", trust, [deep_leaf, deep, inter.cert]
        # name constraints in the intermediate: the shortcut must stay away, results still agree
        nc_key = new_key(kind)
        nc_inter = build_cert(subject="constrained CA", key=nc_key, issuer_cert=pki.root, issuer_key=pki.root_key,
                              not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=300), ca=True)
        nc_cert = (
            x509.CertificateBuilder().subject_name(nc_inter.subject).issuer_name(pki.root.subject)
            .public_key(nc_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=300))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(nc_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.root_key.public_key()),
                           critical=False)
            .add_extension(x509.NameConstraints(permitted_subtrees=[x509.DNSName("inside.example")],
                                                excluded_subtrees=None), critical=True)
            .sign(pki.root_key, hashes.SHA256())
        )
        nc = Issued(nc_cert, nc_key, [])
        for name in ("a.inside.example", "b.inside.example", "outside.example", "c.inside.example"):
            yield f"{kind} name constrained {name}", trust, [
                _custom_leaf(nc, [name], eku=[ExtendedKeyUsageOID.SERVER_AUTH]), nc_cert]


TIMES = (
    NOW,
    NOW + timedelta(days=60),
    NOW + timedelta(days=150),  # the intermediates (120 days) have expired, most leaves (200 days) not
    NOW - timedelta(days=2),
)


def test_verdicts_equal_the_reference_path(caches: Caches) -> None:
    """Every chain, time and host name gets the verdict the full path gives, though one shared
    :class:`Caches` answered most of them without building a path (the shortcut really ran)."""
    cases = list(_cases())
    seen: set[Verdict] = set()
    for at in TIMES:
        for name, trust, chain in cases:
            leaf_names = facts(chain[0], caches).dns_names
            hostnames = [None, "nomatch.example", *leaf_names[:1]]
            if len(leaf_names) > 1:
                hostnames.append(leaf_names[1].replace("*", "x"))
            for hostname in hostnames:
                expected = _reference(chain, trust, at, hostname)
                got = verify_chain(chain, trust=trust, at=at, hostname=hostname, caches=caches)
                assert got is expected, (name, at, hostname)
                seen.add(got)
    # every verdict the shared caches computed is remembered once; those without a path came from the
    # dates or the upper-chain shortcut (the dates alone answer well under two thirds of these cases)
    without_a_path = len(caches.verdicts) - caches.paths_built
    assert 3 * without_a_path >= 2 * len(caches.verdicts), (without_a_path, len(caches.verdicts))
    assert len(caches.upper) > 0
    assert {Verdict.OK, Verdict.EXPIRED, Verdict.NOT_YET_VALID, Verdict.UNKNOWN_AUTHORITY,
            Verdict.INCOMPLETE_CHAIN, Verdict.SELF_SIGNED, Verdict.HOSTNAME_MISMATCH,
            Verdict.INTERMEDIATE_EXPIRED, Verdict.INVALID} <= seen


def test_second_leaf_under_known_intermediate_skips_path_building(caches: Caches) -> None:
    """Leaves of one shape under one intermediate: the first builds a path, the others do not."""
    pki = Pki(now=NOW)
    trust = TrustStore([pki.root])
    # Random serials are 159 bits; one in 128 encodes a byte shorter, which is another leaf shape
    # (the Web PKI rules look at the serial's length): keep the test to one shape.
    leaves = [leaf for leaf in (pki.leaf([f"n{i}.example"]) for i in range(40))
              if leaf.cert.serial_number.bit_length() > 152][:5]
    assert len(leaves) == 5
    for leaf in leaves:
        assert verify_chain([leaf.cert, pki.intermediate.cert], trust=trust, at=NOW, caches=caches) is Verdict.OK
    assert caches.paths_built == 1
    assert (len(caches.verdicts), len(caches.upper)) == (5, 1)  # five chains judged, one shape learnt
    # a forged leaf of the same shape fails its signature check and goes the reference way
    forged = _custom_leaf(pki.intermediate, ["forged.example"], sign_key=new_key(),
                          eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    assert verify_chain([forged, pki.intermediate.cert], trust=trust, at=NOW, caches=caches) is Verdict.INVALID
    assert caches.paths_built == 2
    # once the intermediate has expired, the remembered verdict no longer applies: a new bucket
    later = NOW + timedelta(days=366)
    leaf = pki.leaf(["late.example"], not_before=NOW, not_after=NOW + timedelta(days=500))
    verdict = verify_chain([leaf.cert, pki.intermediate.cert], trust=trust, at=later, caches=caches)
    assert verdict is Verdict.INTERMEDIATE_EXPIRED
    assert caches.paths_built == 3


# ------------------------------------------------------------------------------------------- facts


def _signature_name(cert: x509.Certificate) -> str:
    """The signature algorithm as certloop names it, from cryptography's public accessors."""
    oid = cert.signature_algorithm_oid
    if oid in {SignatureAlgorithmOID.ED25519, SignatureAlgorithmOID.ED448}:
        return "ed25519" if oid == SignatureAlgorithmOID.ED25519 else "ed448"
    algorithm = cert.signature_hash_algorithm
    assert algorithm is not None
    if oid == SignatureAlgorithmOID.RSASSA_PSS:
        return f"{algorithm.name}-rsapss"
    if oid.dotted_string.startswith("1.2.840.10045.4."):  # ecdsa-with-*
        return f"{algorithm.name}-ecdsa"
    assert oid.dotted_string.startswith("1.2.840.113549.1.1."), oid  # PKCS #1 *WithRSAEncryption
    return f"{algorithm.name}-rsa"


def _reference_facts(cert: x509.Certificate) -> CertFacts:
    """CertFacts computed field by field with plain cryptography calls (the pre-optimisation way)."""
    def ext(kind: type[x509.ExtensionType]) -> Any:
        try:
            return cert.extensions.get_extension_for_class(kind).value
        except (x509.ExtensionNotFound, ValueError):
            return None

    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if isinstance(key, rsa.RSAPublicKey):
        key_type, bits = "rsa", key.key_size
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_type, bits = "ecdsa", key.curve.key_size
    else:
        key_type, bits = "unknown", 0
    san, ski, aki, bc = (ext(k) for k in (x509.SubjectAlternativeName, x509.SubjectKeyIdentifier,
                                          x509.AuthorityKeyIdentifier, x509.BasicConstraints))
    sig = _signature_name(cert)
    return CertFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=f"{cert.serial_number:x}",
        dns_names=tuple(san.get_values_for_type(x509.DNSName)) if san else (),
        ip_addresses=tuple(str(i) for i in san.get_values_for_type(x509.IPAddress)) if san else (),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_bits=bits,
        signature_algorithm=sig,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        ski=ski.digest.hex() if ski else None,
        aki=aki.key_identifier.hex() if aki and aki.key_identifier else None,
        is_ca=bool(bc and bc.ca),
        self_issued=cert.subject == cert.issuer,
        weak_crypto=(key_type == "rsa" and bits < 2048) or (key_type == "ecdsa" and bits < 256)
        or sig.startswith(("md5-", "sha1-", "md2-")),
    )


def test_facts_equal_plain_cryptography(tmp_path: Path, caches: Caches) -> None:
    """Facts of EC/RSA roots, intermediates, leaves (IP SANs, no SAN, weak keys) match field by field."""
    pki = Pki(now=NOW)
    rsa_pki = Pki(now=NOW, key_kind="rsa2048")
    certs = [
        pki.root, pki.intermediate.cert, rsa_pki.root, rsa_pki.intermediate.cert,
        pki.leaf(["shop.example", "127.0.0.1", "::1"]).cert,
        pki.leaf([], cn="no-san").cert,
        pki.leaf(["weak.example"], key_kind="rsa1024").cert,
        pki.leaf(["p384.example"], key_kind="ec384").cert,
        pki.self_signed(["me.example"]).cert,
        openssl_sha1_leaf(rsa_pki.intermediate, ["sha1.example"], tmp_path),
    ]
    for cert in certs:
        # a fresh object from the same DER: found by its content in the shared caches, computed anew in fresh ones
        again = x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))
        assert facts(cert, caches) == _reference_facts(cert)
        assert facts(again, caches) is facts(cert, caches)
        assert facts(again, Caches()) == _reference_facts(again)
    assert len(caches.facts_by_der) == len(certs)
    assert facts(pki.root, caches).fingerprint_sha256 == hashlib.sha256(
        pki.root.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_same_pem_block_in_many_files_parses_once(caches: Caches) -> None:
    """An intermediate repeated across bundles yields one certificate object (parsed once), equal facts;
    reading the same bundles again parses nothing."""
    pki = Pki(now=NOW)
    bundles = [to_pem([pki.leaf([f"b{i}.example"]).cert, pki.intermediate.cert]) for i in range(3)]
    parsed = [parse_pem(b, caches).certificates for b in bundles]
    assert parsed[0][1] is parsed[1][1] is parsed[2][1]
    assert len({c[0] for c in parsed}) == 3
    assert len(caches.pem) == 4  # three leaves, one intermediate
    again = [parse_pem(b, caches).certificates for b in bundles]
    assert all(a is b for old, new in zip(parsed, again, strict=True) for a, b in zip(old, new, strict=True))
    assert len(caches.pem) == 4
    assert facts(parsed[0][1], caches) == _reference_facts(pki.intermediate.cert)


def test_tbs_fields_slice_the_der(caches: Caches) -> None:
    """The DER walk finds the issuer/subject/key elements that cryptography itself encodes."""
    pki = Pki(now=NOW)
    leaf = pki.leaf(["walk.example"]).cert
    tbs = tbs_fields(leaf, caches)
    assert tbs is not None
    assert tbs.issuer == leaf.issuer.public_bytes()
    assert tbs.subject == leaf.subject.public_bytes()
    assert tbs.spki == leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert tbs.validity_tags == (0x17, 0x17)
    assert tbs.serial.lstrip(b"\0") == leaf.serial_number.to_bytes(20, "big").lstrip(b"\0")
    assert tbs_of(b"\x30\x05\x30\x03") is None  # truncated: no crash, no fields
    raw = raw_extensions(tbs)
    assert raw is not None
    assert [(critical, value) for _, critical, value in raw] == [
        (e.critical, e.value.public_bytes()) for e in leaf.extensions]
    assert [oid_contents(e.oid) for e in leaf.extensions] == [oid for oid, _, _ in raw]


def test_tbs_span_is_the_signed_bytes() -> None:
    """The signature check hashes the TBS sliced from the DER: exactly cryptography's tbs_certificate_bytes."""
    pki = Pki(now=NOW)
    certs = [pki.leaf(["span.example"]).cert, pki.leaf(["rsa.example"], key_kind="rsa2048").cert,
             pki.intermediate.cert, pki.root, _named([[x509.NameAttribute(NameOID.COMMON_NAME, "ed")]])]
    for cert in certs:
        der = cert.public_bytes(serialization.Encoding.DER)
        tbs = tbs_of(der)
        assert tbs is not None
        assert der[tbs.span[0] : tbs.span[1]] == cert.tbs_certificate_bytes


def _pem_variants(pem: bytes) -> Iterator[tuple[str, bytes]]:
    body = pem.split(b"\n")
    yield "plain", pem
    yield "crlf", pem.replace(b"\n", b"\r\n")
    yield "one long line", body[0] + b"\n" + b"".join(body[1:-2]) + b"\n" + body[-2] + b"\n"
    yield "header line", body[0] + b"\nProc-Type: 4,ENCRYPTED\n\n" + b"\n".join(body[1:])
    yield "text after BEGIN", pem.replace(b"CERTIFICATE-----\n", b"CERTIFICATE----- junk\n", 1)
    yield "space after BEGIN", pem.replace(b"CERTIFICATE-----\n", b"CERTIFICATE----- \n", 1)
    yield "space in a line", pem.replace(b"\n", b" \n", 3).replace(b"----- \n", b"-----\n")
    yield "stray character", pem[:100] + b"*" + pem[101:]
    yield "truncated base64", b"\n".join(body[:3] + body[-2:])
    yield "padding in the middle", pem[:80] + b"=" + pem[81:]


def test_pem_decoded_here_equals_cryptographys_pem_loader() -> None:
    """A plain block is decoded here (base64, then DER) and must give what load_pem_x509_certificate gives:
    the same certificate, the same DER for facts, or an error. Anything unusual goes to cryptography.

    Which way a block went shows in a fresh :class:`Caches`: the block decoded here leaves its DER
    noted for :mod:`certloop.facts` (``der_by_id``), the one cryptography parsed does not."""
    pki = Pki(now=NOW)
    decoded_here = {"plain", "crlf", "one long line"}  # nothing but base64 lines after the BEGIN line
    for cert in (pki.leaf(["pem.example"]).cert, pki.leaf(["rsa.example"], key_kind="rsa2048").cert, pki.root):
        pem = cert.public_bytes(serialization.Encoding.PEM)
        for name, variant in _pem_variants(pem):
            try:
                expected: x509.Certificate | str = x509.load_pem_x509_certificate(variant)
            except ValueError as exc:
                expected = type(exc).__name__
            fresh = Caches()
            got = parse_pem(variant, fresh)
            if isinstance(expected, str):
                assert not got.certificates and got.problems, name
                continue
            assert got.certificates == (expected,), name
            assert len(fresh.der_by_id) == (1 if name in decoded_here else 0), name
            assert der_bytes(got.certificates[0], fresh) == expected.public_bytes(serialization.Encoding.DER), name
            assert facts(got.certificates[0], fresh) == _reference_facts(expected), name


def _named(attributes: list[list[x509.NameAttribute]]) -> x509.Certificate:
    key = new_key("ec256")
    name = x509.Name([x509.RelativeDistinguishedName(rdn) for rdn in attributes])
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_name_text_from_der_equals_cryptography(caches: Caches) -> None:
    """Subjects/issuers written from the DER match rfc4514_string() for plain and awkward names alike."""
    from cryptography.x509.name import _ASN1Type

    attr = x509.NameAttribute
    printable, ia5, bmp = _ASN1Type.PrintableString, _ASN1Type.IA5String, _ASN1Type.BMPString
    names: list[list[list[x509.NameAttribute]]] = [
        [[attr(NameOID.COMMON_NAME, "site00001.bench")]],
        [[attr(NameOID.COUNTRY_NAME, "US")], [attr(NameOID.ORGANIZATION_NAME, "Let's Encrypt")],
         [attr(NameOID.COMMON_NAME, "R3")]],
        [[attr(NameOID.COMMON_NAME, "*.wild.example")]],
        [[attr(NameOID.COMMON_NAME, "printable (x) = y?", printable)]],
        [[attr(NameOID.COMMON_NAME, "ia5@example_x", ia5)]],
        [[attr(NameOID.COMMON_NAME, "bmp name", bmp)]],
        [[attr(NameOID.COMMON_NAME, "a,b+c;d<e>f\"g\\h")]],
        [[attr(NameOID.COMMON_NAME, " leading and trailing ")]],
        [[attr(NameOID.COMMON_NAME, "#hash")]],
        [[attr(NameOID.COMMON_NAME, "ünïcode")]],
        [[attr(NameOID.DOMAIN_COMPONENT, "com")], [attr(NameOID.DOMAIN_COMPONENT, "example")],
         [attr(NameOID.USER_ID, "uid1")]],
        [[attr(NameOID.EMAIL_ADDRESS, "a@example.com")], [attr(NameOID.SERIAL_NUMBER, "123")]],
        [[attr(NameOID.COMMON_NAME, "multi"), attr(NameOID.ORGANIZATION_NAME, "valued")]],
        [[attr(x509.ObjectIdentifier("1.3.6.1.4.1.55555.7"), "custom")]],
        [[attr(NameOID.STREET_ADDRESS, "1 Main St.")], [attr(NameOID.LOCALITY_NAME, "Town")],
         [attr(NameOID.STATE_OR_PROVINCE_NAME, "State")], [attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "Unit/IT")]],
    ]
    for attributes in names:
        cert = _named(attributes)
        expected = cert.subject.rfc4514_string()
        assert facts(cert, caches).subject == facts(cert, caches).issuer == expected
        fast = simple_name_text(cert.subject.public_bytes())
        assert fast is None or fast == expected, expected
    assert simple_name_text(_named(names[0]).subject.public_bytes()) == "CN=site00001.bench"  # the fast path ran
