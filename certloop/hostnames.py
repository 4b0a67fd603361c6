"""Host names against certificates: RFC 6125 coverage by the SAN extension, and IP literals.

    covers(cert, "www.shop.example")                  # wildcard-aware, IDNA, IP SANs
    uncovered(cert, ["a.example", "::1"])             # the names it does not cover, in order
    parse_ip("[fe80::1%eth0]")                        # an IP address, or None for a host name
    server_name("straße.example")                     # "xn--strae-oqa.example"; ValueError if unsendable

Pure. An IP address matches only IP SANs and a host name only DNS SANs; the subject CN is never used.
A hot path passes the :class:`certloop.facts.CertFacts` it has (their SANs are decoded already); a
certificate is read here, for a caller that judges one now and then.
:func:`certloop.verify.verify_chain` decides ``hostname_mismatch`` with :func:`covers` rather than with
``cryptography``'s verifier, so the verdict and the ``hostname_match`` fact agree.

Internationalised names follow IDNA 2008 with the UTS 46 mapping (the ``idna`` package), as browsers
and CAs do, not Python's built-in IDNA 2003 codec: ``straße`` is ``xn--strae-oqa`` (2003 would turn it
into ``strasse``, another domain), and a name the codec refuses is refused before anything is sent.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address

import idna
from cryptography import x509

from certloop.facts import CertFacts

__all__ = ["covers", "parse_ip", "server_name", "uncovered"]

_LABEL = re.compile(r"[A-Za-z0-9_-]+")
"""The characters of one ASCII label: letters, digits, hyphens and underscores (internal zones use
them, and OpenSSL sends them). Lenient on hyphen placement, as OpenSSL is: only what no stack can
send is refused."""
_NAME = re.compile(r"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}")
"""A whole ASCII name of such labels, each 1-63 characters."""


def server_name(name: str) -> str:
    """``name`` as it goes on the wire in SNI: an A-label host name without the trailing dot.

    Raises ``ValueError`` naming the fault for a name no TLS stack can send: an empty label
    (``a..b``, ``.x``), a label over 63 or a name over 253 characters, a NUL or any character
    outside letters, digits, ``-`` and ``_`` in an ASCII label (a space, ``/``, ``@`` ...), or what IDNA 2008 (UTS 46,
    non-transitional) refuses. Non-ASCII names are mapped as UTS 46 says (case folded, full-width
    dots) and encoded; ASCII names keep their spelling (DNS and SNI ignore case).
    """
    text = name[:-1] if name.endswith(".") else name
    if len(text) <= 253 and _NAME.fullmatch(text) is not None:
        return text  # the common case, in one regular-expression match (it runs once per probe)
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"{name!r} is not a valid internationalised host name: {exc}") from None
    if not text:
        raise ValueError("the server name is empty")
    if len(text) > 253:
        raise ValueError(f"the server name is {len(text)} characters long (at most 253)")
    for label in text.split("."):
        if not label:
            raise ValueError(f"{name!r} has an empty label")
        if len(label) > 63:
            raise ValueError(f"{name!r} has a label of {len(label)} characters (at most 63)")
        if _LABEL.fullmatch(label) is None:
            raise ValueError(f"{name!r} has a character a host name cannot hold in {label!r}")
    return text


def _normalise(name: str) -> str:
    """Lower-case A-label form without a trailing dot; '' when the name cannot be encoded."""
    name = name.strip().rstrip(".")
    if name.isascii():
        return name.lower()
    try:
        return server_name(name).lower()
    except ValueError:
        return ""


def _names(subject: x509.Certificate | CertFacts | Iterable[str]) -> tuple[list[str], list[IPv4Address | IPv6Address]]:
    if isinstance(subject, x509.Certificate | CertFacts):
        dns_names, ip_addresses = (_san_values(subject) if isinstance(subject, x509.Certificate)
                                   else (subject.dns_names, subject.ip_addresses))
        ips = [_unscoped(ip) for ip in (parse_ip(a) for a in ip_addresses) if ip is not None]
        return [_normalise(n) for n in dns_names], ips
    dns: list[str] = []
    ips = []
    for entry in subject:
        ip = parse_ip(entry)
        if ip is not None:
            ips.append(_unscoped(ip))
        else:
            dns.append(_normalise(entry))
    return dns, ips


def _san_values(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The DNS and the IP SAN values of ``cert``, as :func:`certloop.facts.facts` reads them (none when
    the extensions do not decode)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _dns_match(pattern: str, name: str) -> bool:
    if not pattern or not name:
        return False
    if "*" not in pattern:
        return pattern == name
    # RFC 6125 6.4.3: only a whole left-most label may be a wildcard; it matches exactly one label.
    if not pattern.startswith("*.") or "*" in pattern[2:]:
        return False
    suffix = pattern[1:]  # ".example.com"
    if suffix.count(".") < 2:
        return False  # "*.com"-style patterns cover a whole top-level domain: never honoured
    label, dot, rest = name.partition(".")
    return bool(label) and bool(dot) and "." + rest == suffix


def covers(subject: x509.Certificate | CertFacts | Iterable[str], name: str) -> bool:
    """Does the certificate's SAN (or the given SAN values) cover ``name``? RFC 6125 rules.

    An IP address matches only IP SANs; a host name only DNS SANs (the subject CN is not used).
    """
    dns, ips = _names(subject)
    ip = parse_ip(name)
    if ip is not None:
        return _unscoped(ip) in ips
    target = _normalise(name)
    return any(_dns_match(p, target) for p in dns)


def uncovered(subject: x509.Certificate | CertFacts | Iterable[str], names: Iterable[str]) -> tuple[str, ...]:
    """Those of ``names`` the certificate does not cover, in the given order."""
    if not isinstance(subject, x509.Certificate | CertFacts):
        subject = tuple(subject)
    return tuple(n for n in names if not covers(subject, n))


def parse_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``name`` as an IP address, or None when it is a host name: the one IP-literal rule of certloop.

    A literal is a dotted quad (``192.0.2.1``; no leading zeros, no short forms) or an IPv6 address,
    optionally in brackets (``[2001:db8::1]``) and with a non-empty zone (``fe80::1%eth0``; IPv6
    only). The zone is kept on the result (``scope_id``): a link-local address is connected through
    it. Everything else, including ``[192.0.2.1]`` and ``fe80::1%``, is a name. The TLS fetch (no
    SNI for a literal), the resolver (a literal is not looked up), the probe (no name verified for a
    literal target) and SAN matching (:func:`covers`, zone ignored) all ask this function.
    """
    text = name
    bracketed = text.startswith("[") and text.endswith("]")
    if bracketed:
        text = text[1:-1]
    elif not text or (text[-1] not in _LAST and ":" not in text):
        return None  # the common case of a host name, without two failed parses
    else:
        try:  # a dotted quad, as strictly as ipaddress reads one (a test compares them), in C
            return IPv4Address(int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big"))
        except (OSError, ValueError):
            pass
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if bracketed and ip.version != 6:
        return None
    return ip


_LAST = frozenset("0123456789")
"""The last character of every dotted quad; an IPv6 literal always has a colon."""


def _unscoped(ip: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    """``ip`` without its zone: a certificate's IP SAN never has one."""
    return ipaddress.IPv6Address(ip.packed) if isinstance(ip, IPv6Address) and ip.scope_id else ip
