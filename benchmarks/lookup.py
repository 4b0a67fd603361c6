"""What one name lookup costs: glibc's getaddrinfo against certloop's Resolver, same names, same files.

    python -m benchmarks.lookup              # N = 5,000 names, every 5th looked up (1,000 lookups)
    python -m benchmarks.lookup --n 1000

A hosts file with N names is bind-mounted over /etc/hosts in a private mount namespace (needs
root), as in the ``hosts`` layout of the ``probe`` scenario; a dnsmasq on loopback serves the same
names for the DNS rows. Inside the namespace one process times, in CPU seconds of the whole process
(threads included): glibc's ``getaddrinfo`` per name (glibc reads and scans /etc/hosts on every
call), certloop's system path on the first lookup of each name and again from its cache, and
certloop's DNS path (``resolver:``) on first lookups. Why it matters: a ``/probe`` of a name that
is not cached pays one lookup on top of the TLS probe (figures in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.peers import MountNamespace
from benchmarks.pki import bench_names
from stack.dnsmasq import Dnsmasq
from stack.process import LOOPBACK

ROOT = Path(__file__).resolve().parent.parent


def _per_lookup(seconds: float, count: int) -> str:
    return f"{seconds / count * 1000:.3f} ms"


async def _certloop(names: list[str], dns: str) -> list[tuple[str, str]]:
    from certloop.resolve import AddressCache, Resolver

    rows = []
    system = Resolver(cache=AddressCache())
    for label in ("certloop system path, first lookup of each name", "certloop system path, cached"):
        t0 = time.process_time()
        for name in names:
            await system.resolve(name)
        rows.append((label, _per_lookup(time.process_time() - t0, len(names))))
    given = Resolver([dns], cache=AddressCache())
    t0 = time.process_time()
    for name in names:
        await given.resolve(name)
    rows.append((f"certloop resolver: [{dns}] (dnsmasq, c-ares), first lookup of each name",
                 _per_lookup(time.process_time() - t0, len(names))))
    crowd = Resolver([dns], cache=AddressCache())
    gate = asyncio.Semaphore(64)

    async def one(name: str) -> None:
        async with gate:
            await crowd.resolve(name)

    t0 = time.process_time()
    await asyncio.gather(*(one(name) for name in names))
    rows.append(("the same, 64 lookups in flight (as under /probe load)", _per_lookup(time.process_time() - t0,
                                                                                       len(names))))
    rows.append(await _dnspython(names, dns))
    return rows


async def _dnspython(names: list[str], server: str) -> tuple[str, str]:
    """What certloop's DNS path did before c-ares: dnspython's asyncio resolver, A and AAAA at once."""
    import dns.asyncresolver
    import dns.nameserver
    import dns.rdatatype

    from certloop.resolve import parse_nameserver

    host, port = parse_nameserver(server)
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
    resolver.cache = None
    t0 = time.process_time()
    for name in names:
        await asyncio.gather(*(resolver.resolve(name, kind, raise_on_no_answer=False, search=False)
                               for kind in (dns.rdatatype.A, dns.rdatatype.AAAA)))
    return ("dnspython asyncio resolver (what certloop did before), first lookup of each name",
            _per_lookup(time.process_time() - t0, len(names)))


def measure(names: list[str], dns: str) -> list[tuple[str, str]]:
    """Run inside the namespace: one row per path, CPU per lookup."""
    t0 = time.process_time()
    for name in names:
        socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    rows = [("glibc getaddrinfo (what certloop did before)", _per_lookup(time.process_time() - t0, len(names)))]
    return rows + asyncio.run(_certloop(names, dns))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.lookup", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=5000, help="names in the hosts file and the DNS server")
    p.add_argument("--every", type=int, default=5, help="look up every k-th name (spread over the file)")
    p.add_argument("--inside", metavar="DNS", help=argparse.SUPPRESS)  # the half that runs in the namespace
    args = p.parse_args(argv)
    names = bench_names(args.n)
    wanted = names[:: args.every]
    if args.inside:
        for label, value in measure(wanted, args.inside):
            print(f"| {label} | {value} |")
        return 0
    with tempfile.TemporaryDirectory(prefix="certloop-lookup-") as tmp:
        work = Path(tmp)
        hosts = work / "hosts"
        hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{LOOPBACK} {name}\n" for name in names))
        dns = Dnsmasq(work / "dns", {name: (LOOPBACK,) for name in names})
        dns.start()
        namespace = MountNamespace.create(work)
        try:
            namespace.bind(hosts, "/etc/hosts")
            print(f"{len(wanted)} lookups of distinct names, {args.n}-line /etc/hosts, CPU per lookup")
            print("| path | CPU per lookup |\n|---|---|", flush=True)
            done = subprocess.run([*namespace.prefix, sys.executable, "-m", "benchmarks.lookup", "--n", str(args.n),
                                   "--every", str(args.every), "--inside", dns.address], check=False, timeout=600,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})  # nsenter starts in /
        finally:
            namespace.stop()
            dns.stop()
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
