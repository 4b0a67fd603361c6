"""Resolve every address of a name and probe each one with the original SNI.

    resolver = Resolver()                          # the system resolver (getaddrinfo)
    resolver = Resolver(["127.0.0.1:8053"])        # ask these DNS servers directly
    results = await fetch_all("shop.example", 443, resolver=resolver)
    # [Presented(address="127.0.0.1", ...), ProbeError(address="127.0.0.2", reason="timeout"), ...]

A name behind several addresses is several endpoints: one may serve a renewed certificate while
another still serves the old one, so each address is probed and labelled on its own.

Caching: the system resolver (``loop.getaddrinfo``, a thread hop per call) exposes no TTL, so
positive answers are kept for ``cache_ttl`` seconds (30 s by default): short enough that a moved
name is followed within one sweep or two, long enough that 64 concurrent probes of one name cost
one lookup (concurrent lookups of a name are also coalesced). Failures are never cached. With
explicit nameservers, dnspython's cache honours each record's own TTL.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from certloop.errors import FailureReason, ProbeError
from certloop.tls import Presented, fetch

if TYPE_CHECKING:  # dnspython is imported when nameservers are configured: ~50 ms less at every start
    import dns.asyncresolver
    import dns.rdatatype

__all__ = ["Resolver", "fetch_all", "is_ip_literal", "parse_nameserver"]

DEFAULT_CACHE_TTL = 30.0
_LOCALHOST = ("127.0.0.1", "::1")


def is_ip_literal(host: str) -> bool:
    """``True`` for ``192.0.2.1``, ``2001:db8::1`` and ``fe80::1%eth0`` (no brackets), ``False`` for names."""
    address, zone, scope = host.partition("%")
    for family in (socket.AF_INET6,) if zone else (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, address)
        except (OSError, ValueError):  # ValueError: an embedded NUL
            continue
        return not zone or bool(scope)
    return False


def parse_nameserver(spec: str) -> tuple[str, int]:
    """``"127.0.0.1:8053"`` -> ``("127.0.0.1", 8053)``; ``"[::1]:53"``, bare IPs default to port 53."""
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {spec!r}: expected [IPv6]:port")
    elif spec.count(":") == 1:
        host, _, port = spec.partition(":")
    else:
        host, port = spec, ""
    if not is_ip_literal(host):
        raise ValueError(f"nameserver {spec!r}: expected an IP address, optionally with :port")
    try:
        number = int(port) if port else 53
    except ValueError:
        raise ValueError(f"nameserver {spec!r}: port must be a number") from None
    if not 0 < number < 65536:
        raise ValueError(f"nameserver {spec!r}: port out of range")
    return host, number


def _ordered(addresses: Sequence[str]) -> list[str]:
    """Deduplicated, IPv4 before IPv6, numerically sorted: the same answer gives the same labels."""
    unique = set(addresses)
    v4 = sorted((a for a in unique if ":" not in a), key=socket.inet_aton)
    v6 = sorted((a for a in unique if ":" in a), key=lambda a: socket.inet_pton(socket.AF_INET6, a))
    return v4 + v6


class Resolver:
    """Every A and AAAA address of a name, from the system resolver or from given nameservers."""

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        timeout: float = 2.0,
        *,
        cache_ttl: float = DEFAULT_CACHE_TTL,
    ) -> None:
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.nameservers = tuple(nameservers or ())
        self._dns: dns.asyncresolver.Resolver | None = None
        if self.nameservers:
            import dns.asyncresolver
            import dns.nameserver
            import dns.resolver

            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port)
                for host, port in map(parse_nameserver, self.nameservers)
            ]
            resolver.timeout = timeout
            resolver.lifetime = timeout
            resolver.cache = dns.resolver.Cache()
            self._dns = resolver
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._inflight: dict[str, asyncio.Future[list[str]]] = {}

    async def resolve(self, host: str) -> list[str]:
        """Every address of ``host`` (IP literals as they are). Raises ``ProbeError(dns)``."""
        if is_ip_literal(host):
            return [host]
        key = host.lower().rstrip(".")
        if self._dns is not None:
            if key == "localhost" or key.endswith(".localhost"):  # RFC 6761: never asked of DNS
                return list(_LOCALHOST)
            return await self._ask_nameservers(key)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return list(hit[1])
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._ask_system(key))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        return list(await asyncio.shield(pending))

    async def _ask_system(self, host: str) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise ProbeError(FailureReason.DNS, f"no answer for {host} within {self.timeout:g}s") from None
        except (socket.gaierror, UnicodeError, OSError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ProbeError(FailureReason.DNS, f"{host}: {detail}") from exc
        addresses = _ordered(
            [str(info[4][0]).partition("%")[0] for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
        )
        if not addresses:
            raise ProbeError(FailureReason.DNS, f"{host}: no IPv4 or IPv6 address")
        self._cache[host] = (time.monotonic() + self.cache_ttl, addresses)
        return addresses

    async def _ask_nameservers(self, host: str) -> list[str]:
        assert self._dns is not None
        import dns.rdatatype

        answers = await asyncio.gather(
            self._query(host, dns.rdatatype.A), self._query(host, dns.rdatatype.AAAA), return_exceptions=True
        )
        addresses: list[str] = []
        for answer in answers:  # both queries finish; the first failure wins
            if isinstance(answer, BaseException):
                raise answer
            addresses.extend(answer)
        if not addresses:
            raise ProbeError(FailureReason.DNS, f"{host}: no A or AAAA records")
        return _ordered(addresses)

    async def _query(self, host: str, rdtype: dns.rdatatype.RdataType) -> list[str]:
        assert self._dns is not None
        import dns.exception
        import dns.resolver

        try:
            answer = await self._dns.resolve(host, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return []
        except dns.resolver.LifetimeTimeout:
            raise ProbeError(
                FailureReason.DNS, f"no answer for {host} from {', '.join(self.nameservers)} within {self.timeout:g}s"
            ) from None
        except dns.resolver.NoNameservers as exc:
            raise ProbeError(FailureReason.DNS, f"{host}: every nameserver failed (e.g. SERVFAIL)") from exc
        except dns.exception.DNSException as exc:
            raise ProbeError(FailureReason.DNS, f"{host}: {type(exc).__name__}") from exc
        if answer.rrset is None:
            return []
        return [rdata.address for rdata in answer.rrset]


async def fetch_all(
    host: str,
    port: int,
    *,
    resolver: Resolver,
    server_name: str | None = None,
    **fetch_kwargs: Any,
) -> list[Presented | ProbeError]:
    """Probe every address of ``host`` concurrently, each with the same SNI.

    ``server_name`` defaults to ``host`` unless ``host`` is an IP literal. Results follow the
    resolver's order; failures are returned (with ``.address`` set), not raised. A name that does
    not resolve raises ``ProbeError(dns)``: there is no address to attribute it to.
    """
    addresses = await resolver.resolve(host)
    if server_name is None and not is_ip_literal(host):
        server_name = host
    results = await asyncio.gather(
        *(fetch(address, port, server_name=server_name, **fetch_kwargs) for address in addresses),
        return_exceptions=True,
    )
    out: list[Presented | ProbeError] = []
    for result in results:
        if isinstance(result, (Presented, ProbeError)):
            out.append(result)
        else:  # a bug, not a probe failure: surface it
            raise result
    return out
