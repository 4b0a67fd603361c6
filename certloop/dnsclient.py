"""A and AAAA records from given DNS servers, through c-ares (pycares) driven by the running event loop.

    client = DnsClient([("127.0.0.1", 8053)], timeout=2.0)
    addresses, ttl = await client.addresses("shop.example")   # (["192.0.2.7", "2001:db8::7"], 300.0)

Why c-ares and not dnspython's asyncio resolver: a ``/probe`` of a name not yet cached pays one
lookup, and with thousands of names nearly every probe is a first lookup. dnspython builds and
parses each message in Python and opens a datagram endpoint per query, which cost more CPU than
the TLS probe itself; c-ares does the same work in C (benchmarks/RESULTS.md, "Name targets").

How it runs: one c-ares channel per event loop, no thread (``sock_state_cb``: c-ares says which
sockets to watch and the loop calls back into ``ares_process_fd``; a timer calls it for c-ares'
own retransmissions and timeouts while queries are outstanding). The name is asked as given
(no search list, no hosts file: those are `certloop.resolve`'s and getaddrinfo's business).

What a caller sees (`certloop.resolve` turns it into ``ProbeError(dns)``): ``addresses`` returns
the A and AAAA addresses and the smallest TTL over the records of both answers (CNAMEs
included); a name that does not exist or has neither record type gives ``([], 0.0)``;
:class:`DnsFailure` when no server answered in time, every server failed (SERVFAIL, REFUSED) or
the name cannot be carried by DNS.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from certloop.errors import DnsFailure

__all__ = ["DnsClient"]


def _give_up(queries: tuple[asyncio.Future[Any], ...]) -> None:
    for query in queries:
        if not query.done():
            query.set_exception(DnsFailure("timeout", "no answer"))


class _Channel:
    """One c-ares channel on one loop, its sockets watched by the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, servers: list[str], per_try: float, tries: int) -> None:
        import pycares  # on first use: no cost for exporters that never ask a DNS server

        self._pycares = pycares
        self.loop = loop
        self._reading: set[int] = set()
        self._writing: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.pending = 0
        self.channel = pycares.Channel(
            sock_state_cb=self._watch, servers=servers, timeout=per_try, tries=tries,
            flags=pycares.ARES_FLAG_NOSEARCH,
        )

    def _watch(self, fd: int, readable: bool, writable: bool) -> None:
        """c-ares' socket-state callback: start or stop watching ``fd``."""
        loop = self.loop
        if readable and fd not in self._reading:
            loop.add_reader(fd, self._process, fd, self._pycares.ARES_SOCKET_BAD)
            self._reading.add(fd)
        elif not readable and fd in self._reading:
            loop.remove_reader(fd)
            self._reading.discard(fd)
        if writable and fd not in self._writing:
            loop.add_writer(fd, self._process, self._pycares.ARES_SOCKET_BAD, fd)
            self._writing.add(fd)
        elif not writable and fd in self._writing:
            loop.remove_writer(fd)
            self._writing.discard(fd)

    def _process(self, read_fd: int, write_fd: int) -> None:
        self.channel.process_fd(read_fd, write_fd)
        self._arm()

    def _arm(self) -> None:
        """Keep one timer for c-ares' next retransmission or timeout while queries are outstanding."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.pending:
            delay = self.channel.timeout()  # type: ignore[no-untyped-call]  # pycares leaves it unannotated
            self._timer = self.loop.call_later(max(delay, 0.001), self._expire)

    def _expire(self) -> None:
        self._timer = None
        bad = self._pycares.ARES_SOCKET_BAD
        self._process(bad, bad)

    def query(self, name: str, qtype: int) -> asyncio.Future[Any]:
        """The DNSResult for ``name``/``qtype``; None for NXDOMAIN or NODATA; else DnsFailure (never
        raised here: a query c-ares refuses at once is a future that already failed)."""
        errors = self._pycares.errno
        future: asyncio.Future[Any] = self.loop.create_future()

        def done(result: Any, error: int | None) -> None:
            self.pending -= 1
            if future.done():  # the caller gave up (cancelled): nothing to deliver
                return
            if not error:
                future.set_result(result)
            elif error in (errors.ARES_ENOTFOUND, errors.ARES_ENODATA):
                future.set_result(None)
            else:
                future.set_exception(self._failure(error))

        self.pending += 1
        try:
            self.channel.query(name, qtype, callback=done)
        except self._pycares.AresError as exc:  # refused at once; c-ares may have called ``done`` already
            if not future.done():
                self.pending -= 1
                code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else errors.ARES_EBADQUERY
                future.set_exception(self._failure(code))
        except (UnicodeError, ValueError) as exc:  # a name pycares cannot encode
            self.pending -= 1
            future.set_exception(DnsFailure("name", type(exc).__name__))
        self._arm()
        return future

    def _failure(self, code: int) -> DnsFailure:
        errors = self._pycares.errno
        detail = errors.strerror(code)
        if code == errors.ARES_ETIMEOUT:
            return DnsFailure("timeout", detail)
        if code in (errors.ARES_EBADNAME, errors.ARES_EBADQUERY, errors.ARES_EBADSTR):
            return DnsFailure("name", detail)
        return DnsFailure("servers", detail)  # SERVFAIL, REFUSED, no server reachable, a malformed answer

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for fd in self._reading:
            self.loop.remove_reader(fd)
        for fd in self._writing:
            self.loop.remove_writer(fd)
        self._reading.clear()
        self._writing.clear()
        self.channel.close()


class DnsClient:
    """A and AAAA of a name from ``servers`` ((host, port) pairs), within ``timeout`` seconds.

    ``per_try`` is the wait for one server's answer before the next try (resolv.conf's
    ``timeout``); the tries fit in ``timeout``. The channel is made on first use, on the running
    loop, and made again if a later call runs on another loop.
    """

    def __init__(self, servers: Sequence[tuple[str, int]], timeout: float, *, per_try: float | None = None) -> None:
        self.servers = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in servers]
        self.timeout = timeout
        self.per_try = min(per_try or timeout, timeout)
        self._tries = max(1, math.floor(timeout / self.per_try))
        self._channel: _Channel | None = None

    def _on(self, loop: asyncio.AbstractEventLoop) -> _Channel:
        channel = self._channel
        if channel is None or channel.loop is not loop or loop.is_closed():
            if channel is not None and not channel.loop.is_closed():
                channel.close()
            channel = self._channel = _Channel(loop, self.servers, self.per_try, self._tries)
        return channel

    async def addresses(self, name: str) -> tuple[list[str], float]:
        """(A and AAAA addresses, smallest TTL in seconds); ``([], 0.0)`` when there are none.

        Raises :class:`DnsFailure`. Both queries run at once and both finish (or time out)."""
        loop = asyncio.get_running_loop()
        channel = self._on(loop)
        pycares = channel._pycares
        queries = (channel.query(name, pycares.QUERY_TYPE_A), channel.query(name, pycares.QUERY_TYPE_AAAA))
        # c-ares bounds each query by its tries; this bounds the pair, without a task per lookup
        timer = loop.call_later(self.timeout, _give_up, queries)
        answers: list[Any] = []
        try:
            for query in queries:
                try:
                    answers.append(await query)
                except DnsFailure as exc:
                    answers.append(exc)
        finally:
            timer.cancel()
            for query in queries:  # cancelled by our caller: settle both, so neither is reported as lost
                if not query.done():
                    query.cancel()
                elif not query.cancelled():
                    query.exception()
        found: list[str] = []
        ttl = math.inf
        for answer in answers:  # both queries finished; the first failure wins
            if isinstance(answer, BaseException):
                raise answer
            if answer is None:
                continue
            for record in answer.answer:
                ttl = min(ttl, float(record.ttl))
                if record.type in (pycares.QUERY_TYPE_A, pycares.QUERY_TYPE_AAAA):
                    found.append(record.data.addr)
        if not found:
            return [], 0.0
        return found, ttl
