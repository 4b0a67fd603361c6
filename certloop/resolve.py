"""Resolve every address of a name (probing each one is `certloop.probe`'s job).

    cache = AddressCache()                                   # the daemon creates it and passes it down
    resolver = Resolver(cache=cache)                         # the system's name service (see below)
    resolver = Resolver(["127.0.0.1:8053"], cache=cache)     # ask these DNS servers directly
    addresses = await resolver.resolve("shop.example")      # ["127.0.0.1", "127.0.0.2", "::1"]

A name behind several addresses is several endpoints: one may serve a renewed certificate while
another still serves the old one, so each address is probed and labelled on its own.

How a name is looked up (the trade-off, accepted): glibc's ``getaddrinfo`` scans /etc/hosts on
every call and needs a thread per call, which with thousands of names costs more CPU than the TLS
probe (benchmarks/RESULTS.md, "name targets"). So without ``resolver:`` the system's configuration
is read, not called: :class:`certloop.nameservice.SystemNames` parses /etc/hosts, nsswitch.conf's
``hosts:`` order and resolv.conf once and again when they change, and the leading ``files`` and
``dns`` services of that order are answered here (hosts from the parsed file, DNS through
c-ares (`certloop.dnsclient`) to resolv.conf's nameservers, the name as given). Everything else goes to
``getaddrinfo``, whose answer, carrying no TTL, is kept ``cache_ttl`` seconds (30 s by default):
any service past that prefix (``myhostname``, ``mdns4_minimal``, ``resolve``, LDAP...), a
resolv.conf without nameservers, and with a ``search`` list a name glibc would complete (fewer dots
than ``ndots``, or not found as given). What is lost: glibc's ``/etc/host.conf``, ``options
rotate``/``edns0``/``single-request`` and ``RES_OPTIONS``.

Caching and coalescing (:class:`AddressCache`): DNS answers are kept as long as their TTL says
(the smallest TTL of the A and AAAA records and any CNAME before them), hosts
answers until the file is re-checked (``recheck``, 1 s), and concurrent lookups of one name share
one lookup. Failures are never cached: a name that comes back is followed at the next probe.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Sequence

from certloop.dnsclient import DnsClient
from certloop.errors import DnsFailure, FailureReason, ProbeError
from certloop.hostnames import parse_ip
from certloop.nameservice import NameserverSet, SystemNames

__all__ = ["AddressCache", "Resolver", "parse_nameserver"]

DEFAULT_CACHE_TTL = 30.0
DEFAULT_MAX_ENTRIES = 65536
_LOCALHOST = ("127.0.0.1", "::1")
Lookup = Callable[[], Awaitable[tuple[list[str], float]]]

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
    if host.startswith("[") or parse_ip(host) is None:
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


class AddressCache:
    """Addresses by name until they expire, and the lookups in flight.

    One per daemon (or per config load), passed to the :class:`Resolver`: never a module global, so
    two resolvers never share answers by accident and a test sees exactly the cache it made.
    Concurrent lookups of one name await the same task (``coalesced`` counts them); a failure is
    handed to every waiter and not kept. At ``max_entries`` expired entries are dropped first, then
    the oldest, so names from ``/probe`` requests cannot grow it without bound.
    """

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._answers: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._inflight: dict[str, asyncio.Future[tuple[str, ...]]] = {}
        self.hits = self.lookups = self.coalesced = 0

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> list[str] | None:
        """The unexpired answer for ``key``, or None."""
        hit = self._answers.get(key)
        if hit is None:
            return None
        if hit[0] <= self.clock():
            del self._answers[key]
            return None
        return list(hit[1])

    def put(self, key: str, addresses: Sequence[str], expires: float) -> None:
        """Keep ``addresses`` until ``expires`` (on :attr:`clock`); a past deadline keeps nothing."""
        if expires <= self.clock():
            self._answers.pop(key, None)
            return
        if key not in self._answers and len(self._answers) >= self.max_entries:
            self._make_room()
        self._answers[key] = (expires, tuple(addresses))

    def _make_room(self) -> None:
        now = self.clock()
        for key in [k for k, (expires, _) in self._answers.items() if expires <= now]:
            del self._answers[key]
        while len(self._answers) >= self.max_entries:
            del self._answers[next(iter(self._answers))]  # dicts keep insertion order: the oldest first

    async def lookup(self, key: str, ask: Lookup) -> list[str]:
        """The cached answer for ``key``, else the one ``ask()`` returns (``(addresses, expires)``), shared."""
        hit = self.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        pending = self._inflight.get(key)
        if pending is None:
            self.lookups += 1
            pending = asyncio.ensure_future(self._fill(key, ask))
            self._inflight[key] = pending
            pending.add_done_callback(lambda done: self._done(key, done))
        else:
            self.coalesced += 1
        return list(await asyncio.shield(pending))  # one waiter cancelled does not cancel the others'

    async def _fill(self, key: str, ask: Lookup) -> tuple[str, ...]:
        addresses, expires = await ask()
        self.put(key, addresses, expires)
        return tuple(addresses)

    def _done(self, key: str, done: asyncio.Future[tuple[str, ...]]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so a failure nobody still awaits is not logged as lost


class _Nameservers:
    """Given DNS servers asked through `certloop.dnsclient` (c-ares): A and AAAA at once, TTLs kept.

    :class:`AddressCache` keeps the combined answer for the smallest TTL of both answers' records
    (the CNAME chain included): one dict hit instead of two resolutions.
    """

    def __init__(self, servers: Sequence[tuple[str, int]], timeout: float, *, per_try: float | None = None) -> None:
        self.client = DnsClient(servers, timeout, per_try=per_try)
        self.timeout = timeout
        self.label = ", ".join(f"{h}:{p}" if p != 53 else h for h, p in servers)

    async def ask(self, host: str, clock: Callable[[], float]) -> tuple[list[str], float]:
        """(every address, expiry on ``clock``); ``[]`` when the name has none (NXDOMAIN or no A/AAAA).

        Raises ``ProbeError(dns)`` when no server gives an answer (timeout, SERVFAIL, a bad name).
        """
        try:  # the name as given: search lists are getaddrinfo's business (see the module docstring)
            addresses, ttl = await self.client.addresses(host)
        except DnsFailure as exc:
            if exc.kind == "timeout":
                raise ProbeError(FailureReason.DNS,
                                 f"no answer for {host} from {self.label} within {self.timeout:g}s") from None
            if exc.kind == "servers":
                raise ProbeError(FailureReason.DNS, f"{host}: every nameserver failed ({exc.detail})") from None
            raise ProbeError(FailureReason.DNS, f"{host}: not a name DNS can carry ({exc.detail})") from None
        if not addresses:
            return [], 0.0
        return _ordered(addresses), clock() + max(ttl, 0.0)


class Resolver:
    """Every A and AAAA address of a name, from the system's name service or from given nameservers.

    ``cache`` is the :class:`AddressCache` to keep answers in (the daemon's; a private one if not
    given). ``system`` is the :class:`SystemNames` to read when no nameservers are given.
    """

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        timeout: float = 2.0,
        *,
        cache: AddressCache | None = None,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        system: SystemNames | None = None,
    ) -> None:
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.nameservers = tuple(nameservers or ())
        self.cache = cache if cache is not None else AddressCache()
        self._given = (_Nameservers([parse_nameserver(ns) for ns in self.nameservers], timeout)
                       if self.nameservers else None)
        self.system = None if self.nameservers else (system or SystemNames())
        self._system_dns: tuple[NameserverSet, _Nameservers] | None = None

    async def resolve(self, host: str) -> list[str]:
        """Every address of ``host`` (an IP literal is its own address). Raises ``ProbeError(dns)``."""
        literal = parse_ip(host)
        if literal is not None:
            return [str(literal)]
        key = host.lower().rstrip(".")
        if not key:
            raise ProbeError(FailureReason.DNS, "empty host name")
        return await self.cache.lookup(key, lambda: self._lookup(key))

    async def _lookup(self, key: str) -> tuple[list[str], float]:
        if self._given is not None:
            if _is_localhost(key):  # RFC 6761: never asked of DNS
                return list(_LOCALHOST), float("inf")
            found, expires = await self._given.ask(key, self.cache.clock)
            if not found:
                raise ProbeError(FailureReason.DNS, f"{key}: no A or AAAA records")
            return found, expires
        return await self._lookup_system(key)

    async def _lookup_system(self, key: str) -> tuple[list[str], float]:
        """nsswitch's leading files/dns services here, in order; the rest through getaddrinfo."""
        assert self.system is not None
        system = self.system
        failure: ProbeError | None = None
        delegate = system.more_after()
        for service in system.order():
            if service == "files":
                listed = system.hosts.lookup(key)
                if listed:
                    return _ordered(listed), self.cache.clock() + system.hosts.file.recheck
                continue
            if _is_localhost(key):  # RFC 6761: never asked of DNS
                continue
            conf, asker = self._dns_from_resolv_conf()
            if asker is None or (conf.search and key.count(".") < conf.ndots):
                delegate = True  # no nameserver (glibc asks 127.0.0.1), or a short name glibc would search
                break
            try:
                found, expires = await asker.ask(key, self.cache.clock)
            except ProbeError as exc:  # glibc goes on to the next service on UNAVAIL/TRYAGAIN too
                failure = failure or exc
                continue
            if found:
                return found, expires
            if conf.search:  # glibc would try the search list next: so does getaddrinfo
                delegate = True
                break
        if _is_localhost(key):
            return list(_LOCALHOST), self.cache.clock() + system.hosts.file.recheck
        if delegate:
            return await self._ask_getaddrinfo(key)
        if failure is not None:
            raise failure
        raise ProbeError(FailureReason.DNS, f"{key}: name not found")

    def _dns_from_resolv_conf(self) -> tuple[NameserverSet, _Nameservers | None]:
        assert self.system is not None
        conf = self.system.nameservers()
        if not conf.servers:
            return conf, None
        if self._system_dns is None or self._system_dns[0] is not conf:  # resolv.conf changed: new servers
            asker = _Nameservers([(s.partition("%")[0], 53) for s in conf.servers], self.timeout,
                                 per_try=conf.timeout)
            self._system_dns = (conf, asker)
        return conf, self._system_dns[1]

    async def _ask_getaddrinfo(self, host: str) -> tuple[list[str], float]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise ProbeError(FailureReason.DNS, f"no answer for {host} within {self.timeout:g}s") from None
        except (socket.gaierror, UnicodeError, OSError, ValueError) as exc:  # ValueError: an embedded NUL
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ProbeError(FailureReason.DNS, f"{host}: {detail}") from exc
        addresses = _ordered(
            [str(info[4][0]).partition("%")[0] for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
        )
        if not addresses:
            raise ProbeError(FailureReason.DNS, f"{host}: no IPv4 or IPv6 address")
        return addresses, self.cache.clock() + self.cache_ttl


def _is_localhost(key: str) -> bool:
    return key == "localhost" or key.endswith(".localhost")
