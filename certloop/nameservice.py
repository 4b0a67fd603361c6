"""What the system's name service is configured to say: /etc/hosts, nsswitch's order, resolv.conf.

    system = SystemNames()                       # /etc/hosts, /etc/nsswitch.conf, /etc/resolv.conf
    system.hosts.lookup("shop.example")          # ["192.0.2.7"], or None when the file does not list it
    system.order()                               # ("files", "dns"): the leading services we answer ourselves
    system.nameservers()                         # NameserverSet from resolv.conf (servers may be empty)

Why: glibc's ``getaddrinfo`` re-reads and scans /etc/hosts on every call and runs in a thread, so
with thousands of names a lookup costs more CPU than the TLS probe it serves (figures in
benchmarks/RESULTS.md, "name targets"). Go's resolver parses the files once and re-reads them when
they change; so does this module.

What must stay true: an edit to any of the three files is seen within ``recheck`` seconds (each is
``stat``-ed at most that often and re-parsed when its mtime, size or inode changes, so an in-place
write and an editor's rename are both noticed). Only what glibc would answer the same way is
answered here: the *leading* ``files`` and ``dns`` services of nsswitch's ``hosts:`` line, up to the
first other service (``myhostname``, ``mdns4_minimal``, ``resolve``...) or action (``[NOTFOUND=return]``);
the caller hands everything past that prefix to ``getaddrinfo``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from certloop.hostnames import parse_ip

__all__ = ["HostsFile", "NameserverSet", "SystemNames", "WatchedFile", "hosts_order",
           "parse_hosts", "parse_resolv_conf"]

T = TypeVar("T")

ANSWERED_HERE = frozenset({"files", "dns"})
GLIBC_DEFAULT_ORDER = ("dns", "files")  # glibc's order when nsswitch.conf has no hosts: line
DEFAULT_RECHECK = 1.0


class WatchedFile(Generic[T]):
    """A file parsed once and again only when it changes; a missing file parses as ``b""``.

    ``stat`` runs at most every ``recheck`` seconds (``clock`` is monotonic); the parse runs when
    ``(mtime_ns, size, inode)`` differs from the last one seen.
    """

    def __init__(self, path: str, parse: Callable[[bytes], T], *, recheck: float = DEFAULT_RECHECK,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.recheck = recheck
        self._parse = parse
        self._clock = clock
        self._seen: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._value: T = parse(b"")
        self.loads = 0  # how many times the file was parsed (tests and curiosity)

    def get(self) -> T:
        now = self._clock()
        if now - self._checked < self.recheck:
            return self._value
        self._checked = now
        try:
            st = os.stat(self.path)
            key: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            key = None
        if key != self._seen or self.loads == 0:
            try:
                with open(self.path, "rb") as f:
                    data = f.read()
            except OSError:
                data, key = b"", None
            self._value = self._parse(data)
            self._seen = key
            self.loads += 1
        return self._value


def _address(text: str) -> str | None:
    """The address of a hosts-file line if it is an IP literal (zone dropped), else None."""
    return text.partition("%")[0] if _literal(text) else None


def _literal(text: str) -> bool:
    """An IP literal as glibc writes one in these files: :func:`certloop.hostnames.parse_ip`, no brackets."""
    return not text.startswith("[") and parse_ip(text) is not None


def parse_hosts(data: bytes) -> dict[str, tuple[str, ...]]:
    """``/etc/hosts`` text -> {lower-case name: addresses in file order}; bad lines are skipped, as glibc does.

    Every line naming a host contributes (glibc's and Go's ``getaddrinfo`` both return all of them).
    """
    table: dict[str, list[str]] = {}
    for raw in data.decode("utf-8", "replace").splitlines():
        fields = raw.partition("#")[0].split()
        if len(fields) < 2:
            continue
        address = _address(fields[0])
        if address is None:
            continue
        for name in fields[1:]:
            found = table.setdefault(name.lower().rstrip("."), [])
            if address not in found:
                found.append(address)
    return {name: tuple(addresses) for name, addresses in table.items()}


class HostsFile:
    """``/etc/hosts`` as a dict, re-read when it changes."""

    def __init__(self, path: str = "/etc/hosts", *, recheck: float = DEFAULT_RECHECK,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.file = WatchedFile(path, parse_hosts, recheck=recheck, clock=clock)

    def lookup(self, name: str) -> list[str] | None:
        """The addresses listed for ``name`` (lower-case, no trailing dot), or None when it is not listed."""
        found = self.file.get().get(name)
        return list(found) if found else None


def _services(data: bytes) -> tuple[str, ...]:
    """Every word of nsswitch.conf's (last) ``hosts:`` line, actions included; glibc's default without one."""
    services: tuple[str, ...] = GLIBC_DEFAULT_ORDER
    for raw in data.decode("utf-8", "replace").splitlines():
        key, sep, value = raw.partition("#")[0].partition(":")
        if sep and key.strip() == "hosts":
            services = tuple(value.split())
    return services


def hosts_order(data: bytes) -> tuple[str, ...]:
    """The leading ``files``/``dns`` services of nsswitch.conf's ``hosts:`` line (see the module docstring).

    ``files dns`` -> ``("files", "dns")``; ``files mdns4_minimal [NOTFOUND=return] dns`` -> ``("files",)``;
    ``resolve [!UNAVAIL=return] files dns`` -> ``()`` (everything goes to getaddrinfo).
    """
    prefix: list[str] = []
    for service in _services(data):
        if service not in ANSWERED_HERE or service in prefix:
            break
        prefix.append(service)
    return tuple(prefix)


def _whole_order(data: bytes) -> tuple[tuple[str, ...], bool]:
    """(our prefix, whether nsswitch lists anything after it)."""
    prefix = hosts_order(data)
    return prefix, len(_services(data)) > len(prefix)


@dataclass(frozen=True)
class NameserverSet:
    """The part of resolv.conf a stub resolver uses: servers (port 53), search list, ndots, timeout, attempts."""

    servers: tuple[str, ...]
    search: tuple[str, ...] = ()
    ndots: int = 1
    timeout: float = 5.0
    attempts: int = 2


def parse_resolv_conf(data: bytes) -> NameserverSet:
    """resolv.conf -> NameserverSet; ``servers`` is empty when it names no usable nameserver (glibc
    would then ask 127.0.0.1: the resolver leaves that, and every other oddity, to getaddrinfo)."""
    servers: list[str] = []
    search: tuple[str, ...] = ()
    ndots, timeout, attempts = 1, 5.0, 2
    for raw in data.decode("utf-8", "replace").splitlines():
        fields = raw.partition("#")[0].partition(";")[0].split()
        if not fields:
            continue
        keyword, args = fields[0], fields[1:]
        if keyword == "nameserver" and args and _literal(args[0]) and len(servers) < 3:  # glibc's MAXNS
            servers.append(args[0])
        elif keyword in ("search", "domain"):
            search = tuple(a.rstrip(".") for a in args)  # the last search/domain line wins, as in glibc
        elif keyword == "options":
            for option in args:
                name, _, value = option.partition(":")
                if name in ("ndots", "timeout", "attempts") and value.isdigit():
                    number = int(value)
                    if name == "ndots":
                        ndots = min(number, 15)
                    elif name == "timeout":
                        timeout = float(max(1, min(number, 30)))
                    else:
                        attempts = max(1, min(number, 5))
    return NameserverSet(tuple(servers), search, ndots, timeout, attempts)


class SystemNames:
    """The three files behind the system resolver, each watched (see :class:`WatchedFile`)."""

    def __init__(
        self,
        *,
        hosts: str = "/etc/hosts",
        nsswitch: str = "/etc/nsswitch.conf",
        resolv_conf: str = "/etc/resolv.conf",
        recheck: float = DEFAULT_RECHECK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hosts = HostsFile(hosts, recheck=recheck, clock=clock)
        self._nsswitch = WatchedFile(nsswitch, _whole_order, recheck=recheck, clock=clock)
        self._resolv = WatchedFile(resolv_conf, parse_resolv_conf, recheck=recheck, clock=clock)

    def order(self) -> tuple[str, ...]:
        """The services answered here, in nsswitch order."""
        return self._nsswitch.get()[0]

    def more_after(self) -> bool:
        """True when nsswitch lists services past :meth:`order` (then a miss goes to getaddrinfo)."""
        return self._nsswitch.get()[1]

    def nameservers(self) -> NameserverSet:
        return self._resolv.get()
