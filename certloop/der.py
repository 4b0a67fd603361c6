"""Raw DER pieces of an X.509 certificate, sliced without decoding (pure, no I/O).

    tbs = tbs_of(der)                      # None when the bytes are not laid out as a certificate
    tbs.issuer, tbs.subject, tbs.spki      # whole DER elements, comparable byte for byte
    raw_extensions(tbs)                    # ((OID contents, critical, value contents), ...)

A few certificate fields are needed as exact bytes (cache keys for names and keys, the shape of a
leaf in :mod:`certloop.verify`); walking the DER for them costs a few microseconds, far less than
decoding the objects ``cryptography`` would build. Only lengths of up to four octets and low tag
numbers occur in certificates; anything else is refused (None), never guessed.
"""

from __future__ import annotations

from typing import NamedTuple

from cryptography import x509

__all__ = ["TbsFields", "oid_contents", "raw_extensions", "simple_name_text", "tbs_of"]


class TbsFields(NamedTuple):
    """Raw DER pieces of a certificate, sliced without decoding (whole elements unless noted).

    A named tuple, not a frozen dataclass: every certificate read builds one (why, and what must stay
    true: docs/architecture.md, "Value types").
    """

    version: bytes  # the explicit [0] element, b"" for v1
    serial: bytes  # INTEGER contents
    signature: bytes  # the TBS AlgorithmIdentifier
    issuer: bytes
    validity_tags: tuple[int, int]  # 0x17 UTCTime or 0x18 GeneralizedTime, not_before then not_after
    subject: bytes
    spki: bytes
    spki_algorithm: bytes
    key_head: bytes  # the key BIT STRING's unused-bits octet and first key octet (EC point form, ...)
    outer_signature: bytes  # the Certificate's signatureAlgorithm (must equal ``signature``)
    extensions: bytes  # the contents of the [3] element (a SEQUENCE of Extension), b"" when absent
    trailer: bytes  # TBS elements between the key and the extensions (unique identifiers), usually b""
    span: tuple[int, int] = (0, 0)  # where the whole TBSCertificate element lies in the DER (what is signed)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``; ValueError when malformed."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 0 < n <= 4 or tag & 0x1F == 0x1F:
            raise ValueError("unsupported DER length or tag")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("DER element overruns its container")
    return tag, pos, pos + length


def tbs_of(der: bytes) -> TbsFields | None:
    """The pieces of a DER certificate, None when it is not laid out as a certificate."""
    try:
        _, start, _ = _tlv(der, 0)
        _, tbs, tbs_end = _tlv(der, start)
        span = (start, tbs_end)
        _, _, outer_end = _tlv(der, tbs_end)
        outer = der[tbs_end:outer_end]
        pos = tbs
        tag, _, el_end = _tlv(der, pos)
        version = b""
        if tag == 0xA0:
            version, pos = der[pos:el_end], el_end
        elements = []
        for _ in range(6):  # serial, signature, issuer, validity, subject, spki
            tag, content, el_end = _tlv(der, pos)
            elements.append((tag, content, pos, el_end))
            pos = el_end
        (_, serial_c, _, serial_e), sig, iss, val, subj, spki = elements
        nb_end = _tlv(der, val[1])[2]
        na_tag = _tlv(der, nb_end)[0]
        alg = _tlv(der, spki[1])
        key_content = _tlv(der, alg[2])[1]
        trailer_start, trailer_end, extensions = pos, tbs_end, b""
        while pos < tbs_end:
            tag, content, el_end = _tlv(der, pos)
            if tag == 0xA3:
                trailer_end, extensions = pos, der[content:el_end]
            pos = el_end
        return TbsFields(
            version=version,
            serial=der[serial_c:serial_e],
            signature=der[sig[2] : sig[3]],
            issuer=der[iss[2] : iss[3]],
            validity_tags=(der[val[1]], na_tag),
            subject=der[subj[2] : subj[3]],
            spki=der[spki[2] : spki[3]],
            spki_algorithm=der[spki[1] : alg[2]] if alg[0] == 0x30 else b"",
            key_head=der[key_content : key_content + 2],
            outer_signature=outer,
            extensions=extensions,
            trailer=der[trailer_start:trailer_end],
            span=span,
        )
    except (ValueError, IndexError):
        return None


def raw_extensions(tbs: TbsFields) -> tuple[tuple[bytes, bool, bytes], ...] | None:
    """(OID contents, critical, value contents) per extension, undecoded; None when malformed."""
    der = tbs.extensions
    out: list[tuple[bytes, bool, bytes]] = []
    try:
        if der:
            _, pos, end = _tlv(der, 0)
            while pos < end:
                _, content, ext_end = _tlv(der, pos)
                _, oid_c, oid_e = _tlv(der, content)
                tag, value_c, value_e = _tlv(der, oid_e)
                critical = tag == 0x01 and der[value_c:value_e] != b"\x00"
                if tag == 0x01:
                    tag, value_c, value_e = _tlv(der, value_e)
                out.append((der[oid_c:oid_e], critical, der[value_c:value_e]))
                pos = ext_end
    except (ValueError, IndexError):
        return None
    return tuple(out)


def oid_contents(oid: x509.ObjectIdentifier) -> bytes:
    """The DER contents octets of an OID (to compare with raw extension OIDs)."""
    arcs = [int(a) for a in oid.dotted_string.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return bytes(out)


_NAME_KEYS = {oid_contents(oid): key for oid, key in (
    (x509.NameOID.COMMON_NAME, "CN"), (x509.NameOID.LOCALITY_NAME, "L"),
    (x509.NameOID.STATE_OR_PROVINCE_NAME, "ST"), (x509.NameOID.ORGANIZATION_NAME, "O"),
    (x509.NameOID.ORGANIZATIONAL_UNIT_NAME, "OU"), (x509.NameOID.COUNTRY_NAME, "C"),
    (x509.NameOID.STREET_ADDRESS, "STREET"), (x509.NameOID.DOMAIN_COMPONENT, "DC"),
    (x509.NameOID.USER_ID, "UID"),
)}  # the short names cryptography's rfc4514_string() uses
_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_PRINTABLE = frozenset(_ALNUM + b" '()-./:=?")  # PrintableString minus what RFC 4514 escapes (+ ,)
_TEXT = frozenset(_PRINTABLE | frozenset(b"*@_!$%&[]^`{|}~"))  # ASCII needing no RFC 4514 escape


def simple_name_text(name: bytes) -> str | None:
    """RFC 4514 text of a DER Name, exactly as ``cryptography`` writes it, for the plain case only.

    Plain: single-attribute RDNs of well-known types (CN, O, OU, C, L, ST, STREET, DC, UID) whose
    values are UTF8String, PrintableString or IA5String of ASCII characters that need no escaping
    (no leading or trailing space). Anything else is None: the caller decodes the name fully.
    """
    try:
        tag, pos, end = _tlv(name, 0)
        if tag != 0x30:
            return None
        parts: list[str] = []
        while pos < end:
            tag, rdn, rdn_end = _tlv(name, pos)
            if tag != 0x31:
                return None
            tag, atv, atv_end = _tlv(name, rdn)
            if tag != 0x30 or atv_end != rdn_end:  # a SEQUENCE, and the only one in its SET
                return None
            tag, oid, oid_end = _tlv(name, atv)
            key = _NAME_KEYS.get(name[oid:oid_end]) if tag == 0x06 else None
            tag, start, stop = _tlv(name, oid_end)
            value = name[start:stop]
            allowed = _PRINTABLE if tag == 0x13 else _TEXT if tag in (0x0C, 0x16) else None
            if (key is None or allowed is None or stop != atv_end or not value or not allowed.issuperset(value)
                    or value[0] == 0x20 or value[-1] == 0x20 or (key == "C" and len(value) != 2)):
                return None
            parts.append(f"{key}={value.decode('ascii')}")
            pos = rdn_end
        return ",".join(reversed(parts))
    except (ValueError, IndexError):
        return None
