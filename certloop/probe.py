"""Probe a TLS target: resolve the name, fetch every address with the original SNI, decode each chain.

    names = target_names("shop.example")                # Names(sni="shop.example", verified="shop.example")
    results = await probe_all("shop.example", 443, resolver=resolver, caches=caches, connect_timeout=2.0)
    # [Probed(address="127.0.0.1", chain=(leaf, ...), ...), Probed(address="127.0.0.2", error=ProbeError(...))]

The one probe path of certloop: the exporter's inventory and ``/probe``, ``certloop check`` and the
renewer's proof that a new leaf is served all come through here, so they agree on three rules that
once differed between them:

* **Names** (:func:`target_names`): the name sent as SNI and the name the chain is verified for are
  the same: the given ``server_name``, else the target's host, except that an IP literal (the one
  rule, :func:`certloop.hostnames.parse_ip`: IPv4, IPv6, bracketed, zoned) sends no SNI and has no
  name verified. A ``server_name`` that is itself an IP literal is verified against IP SANs and not
  sent (SNI carries host names only).
* **Addresses** (:func:`addresses_of`): a literal is its own single address (brackets dropped, the
  zone kept so a link-local address can be reached); a name gives every A and AAAA address of the
  resolver, filtered by ``ip_protocol``; none left is ``ProbeError(dns)``. An SNI that cannot be
  sent (`certloop.hostnames.server_name`) is ``ProbeError(bad_server_name)`` before any lookup.
* **Results** (:func:`probe_address`): every address is probed on its own and a peer's failure is
  data (a :class:`Probed` with ``error``), never an exception; a chain that does not decode is a
  ``handshake`` failure, as a TLS stack would refuse it.

Judging the decoded chain (trust, dates, the status policy) is the caller's: the exporter turns it
into metrics, ``check`` into a row, the renewer compares one fingerprint. Pure rules here are
functions of their arguments; the I/O is :func:`certloop.tls.fetch` and the :class:`Resolver`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from certloop.errors import FailureReason, ProbeError
from certloop.hostnames import parse_ip
from certloop.hostnames import server_name as wire_name
from certloop.plaintext import Negotiator
from certloop.tls import Presented, fetch
from certloop.x509 import ParseCaches, load_der_chain

__all__ = [
    "Names",
    "Probed",
    "Resolver",
    "addresses_of",
    "probe_address",
    "probe_addresses",
    "probe_all",
    "target_names",
]

class Resolver(Protocol):
    """What :func:`addresses_of` needs of a resolver (:class:`certloop.resolve.Resolver` is one)."""

    async def resolve(self, host: str) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class Names:
    """What a target is asked for (``sni``, None: no SNI) and verified for (``verified``, None: no name)."""

    sni: str | None
    verified: str | None


def target_names(host: str, server_name: str | None = None) -> Names:
    """The SNI and verified-name rule (see the module docstring); pure."""
    name = server_name or (None if parse_ip(host) is not None else host)
    if name is None:
        return Names(None, None)
    return Names(None if parse_ip(name) is not None else name, name)


@dataclass(frozen=True, slots=True)
class Probed:
    """One address of a target, probed once: exactly one of ``presented`` and ``error`` is set."""

    address: str
    port: int
    names: Names
    finished: float
    """``time.perf_counter()`` when this address was done (callers time each address from their start)."""
    presented: Presented | None = None
    chain: tuple[x509.Certificate, ...] = ()
    """The presented chain decoded, leaf first, unverified."""
    error: ProbeError | None = None

    @property
    def leaf_fingerprint(self) -> str | None:
        """SHA-256 (hex) of the presented leaf's DER, None when nothing was presented."""
        if self.presented is None or not self.presented.chain_der:
            return None
        return hashlib.sha256(self.presented.chain_der[0]).hexdigest()


def _family_ok(address: str, ip_protocol: str) -> bool:
    return ip_protocol == "both" or (":" in address) == (ip_protocol == "ip6")


async def addresses_of(
    host: str, resolver: Resolver, ip_protocol: str = "both", names: Names | None = None
) -> list[str]:
    """Every address to probe for ``host`` (see the module docstring).

    Raises ``ProbeError(bad_server_name)`` first when ``names`` (default: :func:`target_names` of
    ``host``) holds an SNI no TLS stack can send: nothing is looked up for a name that cannot be
    probed, and the failure belongs to the target, not to one address. Then ``ProbeError(dns)``.
    """
    sni = (names or target_names(host)).sni
    if sni is not None:
        try:
            wire_name(sni)
        except ValueError as exc:
            raise ProbeError(FailureReason.BAD_SERVER_NAME, str(exc)) from None
    literal = parse_ip(host)
    if literal is not None:
        return [str(literal)]
    found = [a for a in await resolver.resolve(host) if _family_ok(a, ip_protocol)]
    if not found:
        raise ProbeError(FailureReason.DNS, f"no {ip_protocol} address for {host}")
    return found


async def probe_address(
    address: str,
    port: int,
    names: Names,
    caches: ParseCaches,
    *,
    starttls: Negotiator | str | None = None,
    connect_timeout: float = 5.0,
    handshake_timeout: float = 5.0,
) -> Probed:
    """Fetch and decode the chain ``address:port`` presents for ``names.sni``; failures are data.

    ``caches`` (the caller's :class:`certloop.caches.Caches`) remembers decoded certificates: an
    unchanged chain is decoded once.
    """
    try:
        presented = await fetch(
            address, port, server_name=names.verified, starttls=starttls,
            connect_timeout=connect_timeout, handshake_timeout=handshake_timeout,
        )
    except ProbeError as exc:
        return Probed(address, port, names, time.perf_counter(), error=exc)
    try:
        # malformed fields surface lazily (names, extensions) as ValueError: data, not a bug
        chain = tuple(load_der_chain(presented.chain_der, caches))
    except ValueError:
        error = ProbeError(FailureReason.HANDSHAKE, "a presented certificate does not decode",
                           address=address, port=port)
        return Probed(address, port, names, time.perf_counter(), presented=None, error=error)
    return Probed(address, port, names, time.perf_counter(), presented=presented, chain=chain)


async def probe_all(
    host: str,
    port: int,
    *,
    resolver: Resolver,
    caches: ParseCaches,
    server_name: str | None = None,
    ip_protocol: str = "both",
    starttls: Negotiator | str | None = None,
    connect_timeout: float = 5.0,
    handshake_timeout: float = 5.0,
) -> list[Probed]:
    """Probe every address of ``host`` concurrently, each with the same names; in the resolver's order.

    Raises ``ProbeError`` (``bad_server_name``, ``dns``) when there is no address to attribute a
    failure to.
    """
    names = target_names(host, server_name)
    addresses = await addresses_of(host, resolver, ip_protocol, names)
    return await probe_addresses(addresses, port, names, caches, starttls=starttls, connect_timeout=connect_timeout,
                                 handshake_timeout=handshake_timeout)


async def probe_addresses(
    addresses: Sequence[str],
    port: int,
    names: Names,
    caches: ParseCaches,
    *,
    starttls: Negotiator | str | None = None,
    connect_timeout: float = 5.0,
    handshake_timeout: float = 5.0,
) -> list[Probed]:
    """:func:`probe_address` for each of ``addresses`` at once (one address: no task is made)."""
    if len(addresses) == 1:
        return [await probe_address(addresses[0], port, names, caches, starttls=starttls,
                                    connect_timeout=connect_timeout, handshake_timeout=handshake_timeout)]
    return list(await asyncio.gather(*(
        probe_address(a, port, names, caches, starttls=starttls, connect_timeout=connect_timeout,
                      handshake_timeout=handshake_timeout)
        for a in addresses
    )))
